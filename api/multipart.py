"""Stream a multipart upload straight to disk, stopping at a size limit.

Starlette's form parser spools the whole body before a route sees it; here the
bytes go to the destination file as they arrive, and an upload over the limit
is cut off at the limit, not after the client has sent gigabytes. Everything
else a client sends is bounded too: the number of parts, each part's headers,
each text field, and only the fields the route names are kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

MAX_FIELD_BYTES = 4096
MAX_PARTS = 16
MAX_HEADER_BYTES = 8192   # all header lines of one part together


class UploadError(ValueError):
    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


@dataclass
class ReceivedUpload:
    filename: str | None = None
    path: Path | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


async def receive_upload(request: Request, dest: Path, max_bytes: int, file_field: str = "file",
                         fields: frozenset[str] = frozenset(), max_field_bytes: int = MAX_FIELD_BYTES,
                         max_parts: int = MAX_PARTS) -> ReceivedUpload:
    """Write the part named `file_field` to `dest`; the parts named in `fields` become short text fields.

    Any other part name, a field over `max_field_bytes`, more than `max_parts` parts or oversized part
    headers is refused (400) as soon as it is seen: memory stays bounded whatever the client sends.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UploadError("send the dataset as multipart/form-data with a 'file' part", 415)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + max_parts * (max_field_bytes + MAX_HEADER_BYTES):
        raise UploadError(f"upload of {int(declared)} bytes is over the limit of {max_bytes} bytes", 413)

    result = ReceivedUpload()
    state: dict = {"headers": {}, "name": None, "value": bytearray(), "out": None, "field": b"", "hval": b"",
                   "parts": 0, "header_bytes": 0}

    def on_part_begin():
        state["parts"] += 1
        if state["parts"] > max_parts:
            raise UploadError(f"the upload has more than {max_parts} parts; send the file and at most "
                              f"{', '.join(sorted(fields)) or 'no other fields'}")
        state["headers"], state["name"], state["value"], state["out"] = {}, None, bytearray(), None
        state["header_bytes"] = 0

    def count_header(n: int) -> None:
        state["header_bytes"] += n
        if state["header_bytes"] > MAX_HEADER_BYTES:
            raise UploadError(f"a part's headers are over {MAX_HEADER_BYTES} bytes")

    def on_header_field(data, start, end):
        count_header(end - start)
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        count_header(end - start)
        state["hval"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").lower()] = state["hval"]
        state["field"], state["hval"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get("content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == file_field:
            if result.path is not None:
                raise UploadError(f"send exactly one '{file_field}' part")
            result.filename = disp.get(b"filename", b"").decode("utf-8", "replace") or None
            result.path = dest
            state["out"] = open(dest, "wb")
        elif name not in fields:
            known = ", ".join(repr(f) for f in (file_field, *sorted(fields)))
            raise UploadError(f"unknown form field {name[:60]!r}; this upload takes {known}", 422)
        elif name in result.fields:
            raise UploadError(f"form field {name!r} is sent more than once; send it once", 422)

    def on_part_data(data, start, end):
        chunk = data[start:end]
        if state["out"] is not None:
            result.size += len(chunk)
            if result.size > max_bytes:
                raise UploadError(f"upload is over the limit of {max_bytes} bytes", 413)
            state["out"].write(chunk)
        else:
            state["value"] += chunk
            if len(state["value"]) > max_field_bytes:
                raise UploadError(f"form field {state['name']!r} is over {max_field_bytes} bytes", 422)

    def on_part_end():
        if state["out"] is not None:
            state["out"].close()
            state["out"] = None
        elif state["name"]:
            try:
                result.fields[state["name"]] = state["value"].decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(f"form field {state['name']!r} is not UTF-8 text", 422) from None

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # python-multipart raises its own errors for a malformed body
        raise UploadError(f"malformed multipart body: {exc}") from None
    finally:
        if state["out"] is not None:
            state["out"].close()
    if result.path is None:
        raise UploadError(f"no '{file_field}' part in the upload; send the dataset file as '{file_field}'")
    return result
