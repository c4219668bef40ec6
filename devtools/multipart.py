"""A one-file multipart/form-data body, as curl -F sends it: for tests, bench and tools."""

from __future__ import annotations

import secrets


def multipart_body(filename: str | bytes, data: bytes, field_name: str = "file"
                   ) -> tuple[bytes, str]:
    """The body and its Content-Type; a bytes `filename` goes on the wire exactly as given."""
    boundary = secrets.token_hex(16)
    name = filename if isinstance(filename, bytes) else filename.encode()
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            'filename="').encode() + name + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
    return (head + data + f"\r\n--{boundary}--\r\n".encode(),
            f"multipart/form-data; boundary={boundary}")


def multipart_files(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None,
                    field_name: str = "file") -> tuple[bytes, str]:
    """Several files (and small text fields first) in one body, as `curl -F file=@a -F
    file=@b` sends them: a batch for POST /v1/batches."""
    boundary = secrets.token_hex(16)
    out = bytearray()
    for name, value in (fields or {}).items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n").encode()
    for filename, data in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                ).encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
