"""`POST /v1/detect`: what an upload is, decided exactly as the upload path decides it.

Only formats.detect_bytes and the FORMATS table: no textract, no parsing beyond the
magic bytes and, for ZIP and OLE2 containers, their directory (safe for the api process).
"""

from __future__ import annotations

from daemon.documents.formats import detect_bytes


def detect(filename: str | None, data: bytes | bytearray,
           declared_ext: str | None = None) -> dict[str, str]:
    """`{"format": ext, "mime_type": ..., "family": ...}` for an upload.

    Raises what the upload path raises for the same bytes (UnsupportedFormat,
    EncryptedDocument), so the api answers /v1/detect and /v1/jobs with the same error.
    """
    fmt = detect_bytes(filename, data, declared_ext)
    return {"format": fmt.ext, "mime_type": fmt.mime, "family": fmt.family}
