"""PDF bytes: the check every download must pass, and the renderer the sandbox uses."""

from __future__ import annotations

from collections.abc import Sequence

# Readers accept the header within the first 1024 bytes and the `%%EOF` marker within the last
# 1024 bytes (PDF 32000-1, implementation notes); being stricter would reject real documents.
HEADER = b"%PDF-"
TRAILER = b"%%EOF"
WINDOW = 1024


def pdf_problem(data: bytes) -> str | None:
    """Why `data` is not a complete PDF file, or None when it is one."""
    if not data.strip():
        return "the file is empty"
    if HEADER not in data[:WINDOW]:
        return "the file is not a PDF (no %PDF- header)"
    if TRAILER not in data[-WINDOW:]:
        return "the PDF is truncated (no %%EOF at the end)"
    return None


def render_pdf(lines: Sequence[str], *, title: str) -> bytes:
    """A one-page A4 PDF with `lines` in Helvetica: valid xref table, renders with pdftoppm."""
    text = [b"BT", b"/F1 18 Tf", b"72 770 Td", b"(" + _pdf_string(title) + b") Tj"]
    text += [b"/F1 12 Tf", b"0 -34 Td", b"18 TL"]
    for line in lines:
        text.append(b"(" + _pdf_string(line) + b") Tj T*")
    text.append(b"ET")
    content = b"\n".join(text)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Title (" + _pdf_string(title) + b") /Producer (billing-bot SMSC sandbox) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (len(objects) + 1, len(objects))
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
