"""Opens N keep-alive connections to host:port, sends one request on each,
reads the response, then holds them idle until stdin closes. Prints READY."""
import socket
import sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = []
for _ in range(n):
    s = socket.create_connection((host, port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    conns.append(s)
for s in conns:
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
print("READY", flush=True)
sys.stdin.read()
