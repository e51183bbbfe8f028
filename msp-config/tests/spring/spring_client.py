"""Reads configuration from a config server with the Spring Cloud Config
client from PyPI (`config-client`, module `config`), as a Python service
would, and prints what it got as JSON.

    python3 spring_client.py URL APP PROFILE LABEL KEY [TOKEN]

Prints {"value": <KEY's value>, "keys": [...], "encrypted": ..., "decrypted": ...};
with TOKEN it also round-trips "s3cr3t" through the server's /encrypt and
/decrypt endpoints (Authorization: Bearer TOKEN).
"""

import json
import sys

from config.spring import ConfigClient


def main() -> None:
    url, app, profile, label, key = sys.argv[1:6]
    token = sys.argv[6] if len(sys.argv) > 6 else None
    client = ConfigClient(address=url, app_name=app, profile=profile, label=label, fail_fast=False)
    client.get_config(timeout=10)
    out = {"value": client.get(key, None), "config": client.config}
    if token:
        headers = {"Content-Type": "text/plain", "Authorization": f"Bearer {token}"}
        sealed = client.encrypt("s3cr3t", headers=headers, timeout=10)
        out["encrypted"] = sealed
        out["decrypted"] = client.decrypt(sealed, headers=headers, timeout=10)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
