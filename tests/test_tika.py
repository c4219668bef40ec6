"""The Tika Server 3.x dialect, tested with Tika's own clients against a running stack.

tika-python (`tika`, as Haystack and scripts use it) and tika-client (as paperless-ngx uses
it, with httpx) talk to a real stack; the key travels as the HTTP Basic password in the
URL, as those clients allow. Every corpus document must read through each client exactly
as POST /v1/extract reads it. The decisions (content negotiation, names, hints, the JSON
contract, the XHTML) are also tested in-process, where they are fast.
"""

from __future__ import annotations

import base64
import csv
import gzip
import importlib
import io
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace
from xml.etree import ElementTree

import httpx
import pytest
from tika_client import TikaClient

from daemon.api.tika.intake import (
    TypedOnly,
    hinted_ext,
    tell_format,
    tika_options,
    usable_filename,
)
from daemon.api.tika.metadata import Parsed, as_csv, tika_metadata
from daemon.api.tika.render import xhtml
from daemon.api.tika.routes import negotiate
from daemon.documents.detect import detect
from daemon.documents.formats import FORMATS
from daemon.store import breaker_key
from devtools.stack import Stack, free_port, wait_for
from tests.conftest import CORPUS, CorpusDoc, corpus_documents

DOCS = corpus_documents()
XHTML = "{http://www.w3.org/1999/xhtml}"
C = CORPUS / "textract-tests"


# --- the stack and the clients ------------------------------------------------------------
def tika_url(stack: Stack, port: int | None = None) -> str:
    """The URL a Tika client is given: the key as the Basic password, as paperless-ngx's
    PAPERLESS_TIKA_ENDPOINT=http://tika:KEY@textractd:PORT."""
    return f"http://tika:{stack.api_key}@127.0.0.1:{port or stack.port}"


@pytest.fixture(scope="module")
def tika_python(shared_stack: Stack, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """tika-python configured as its users do: TIKA_SERVER_ENDPOINT and TIKA_CLIENT_ONLY=1
    (no Java server downloaded or started). It reads them when first imported."""
    names = ("TIKA_SERVER_ENDPOINT", "TIKA_CLIENT_ONLY", "TIKA_LOG_PATH")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(TIKA_SERVER_ENDPOINT=tika_url(shared_stack), TIKA_CLIENT_ONLY="1",
                      TIKA_LOG_PATH=str(tmp_path_factory.mktemp("tika-log")))
    modules = [importlib.reload(sys.modules[name]) if name in sys.modules
               else importlib.import_module(name)
               for name in ("tika.tika", "tika.parser", "tika.detector")]
    yield SimpleNamespace(tika=modules[0], parser=modules[1], detector=modules[2])
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def tika_client(shared_stack: Stack) -> Iterator[TikaClient]:
    with TikaClient(tika_url=tika_url(shared_stack), backend="httpx", timeout=120,
                    compress=True) as client:
        yield client


@pytest.fixture(scope="module")
def http(shared_stack: Stack) -> Iterator[httpx.Client]:
    """A plain client with the key in X-API-Key, for /v1 and for raw Tika requests."""
    with httpx.Client(base_url=shared_stack.url, timeout=120,
                      headers={"X-API-Key": shared_stack.api_key}) as client:
        yield client


def v1_text(http: httpx.Client, name: str, data: bytes, **query: str) -> str:
    """What POST /v1/extract answers for the document: the reference for every client."""
    reply = http.post("/v1/extract", params={"filename": name, **query}, content=data)
    assert reply.status_code == 200, reply.text[:300]
    return reply.text


def v1_job(http: httpx.Client, name: str, data: bytes) -> dict:
    reply = http.post("/v1/extract", params={"filename": name}, content=data,
                      headers={"Accept": "application/json"})
    assert reply.status_code == 200, reply.text[:300]
    return reply.json()


def tells_itself(doc: CorpusDoc, mime: str | None = None) -> bool:
    """Whether the content (with a Content-Type `mime`) gives the format the name gives,
    so a client that sends no name (from_buffer) reads it as /v1 does. A .psv sent as
    text/plain is plain text to Tika too."""
    data = doc.path.read_bytes()
    try:
        return tell_format(None, data, hinted_ext(mime)).ext == \
            detect(doc.path.name, data)["format"]
    except TypedOnly:
        return False


def strings_only(obj: dict) -> bool:
    """Tika's JSON contract: every value a string or a list of strings."""
    return all(isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str)
                                                                  for x in v))
               for v in obj.values())


# --- every corpus document, through each client -------------------------------------------
@pytest.mark.parametrize("index,doc", list(enumerate(DOCS)), ids=[d.id for d in DOCS])
def test_every_corpus_document_reads_through_each_client_as_v1_extract_reads_it(
        index: int, doc: CorpusDoc, http, tika_python, tika_client) -> None:
    data = doc.path.read_bytes()
    expected = v1_text(http, doc.path.name, data)
    # One call per client per document, each client's calls taken in turn across the corpus.
    python_call = index % 3
    if python_call == 2 and not tells_itself(doc):
        python_call = 0
    if python_call == 0:  # PUT /rmeta/text, name as b'...'
        parsed = tika_python.parser.from_file(str(doc.path))
    elif python_call == 1:  # PUT /tika, Accept: text/plain
        parsed = tika_python.parser.from_file(str(doc.path), service="text")
    else:  # PUT /rmeta/text, no name at all
        parsed = tika_python.parser.from_buffer(data)
    assert parsed["status"] == 200
    assert (parsed["content"] or "") == expected, f"tika-python call {python_call}"

    client_call = index % 3
    mime = FORMATS[detect(doc.path.name, data)["format"]].mime
    if client_call == 1 and not tells_itself(doc, mime):
        client_call = 0
    if client_call == 0:  # POST /tika/form/text, part `upload-file`
        content = tika_client.tika.as_text.from_file(doc.path, mime).content
    elif client_call == 1:  # PUT /tika/text, gzip above 1 KB, Content-Type as the hint
        content = tika_client.tika.as_text.from_buffer(data, mime).content
    else:  # POST /rmeta/form/text
        [container] = tika_client.rmeta.as_text.from_file(doc.path, mime)
        content = container.content
    assert (content or "") == expected, f"tika-client call {client_call}"


# --- paperless-ngx's exact sequence -------------------------------------------------------
@pytest.mark.parametrize("name", ["docx/raw_text.docx", "pdf/raw_text.pdf"])
def test_paperless_ngx_parses_a_document_and_reads_its_date_and_metadata(
        name: str, shared_stack: Stack, http) -> None:
    """paperless_tika.parsers.TikaDocumentParser: as_text.from_file, on a 500 from_buffer,
    `.content.strip()` and `.created`; metadata.from_file for the metadata panel."""
    path = C / name
    mime = FORMATS[path.suffix[1:]].mime
    job = v1_job(http, path.name, path.read_bytes())
    with TikaClient(tika_url=tika_url(shared_stack)) as client:  # paperless's defaults
        try:
            parsed = client.tika.as_text.from_file(path, mime)
        except httpx.HTTPStatusError as err:  # pragma: no cover - paperless's retry
            assert err.response.status_code == 500
            parsed = client.tika.as_text.from_buffer(path.read_bytes(), mime)
        retried = client.tika.as_text.from_buffer(path.read_bytes(), mime)
        panel = client.metadata.from_file(path, mime)
    assert parsed.content.strip() == job["text"].strip()
    assert retried.content == parsed.content
    created = (job.get("metadata") or {}).get("created")
    if created is None:
        assert parsed.created is None
    else:
        assert parsed.created == datetime.fromisoformat(created)
        assert parsed.created.tzinfo is not None
    assert panel.type == mime
    assert "X-TIKA:content" not in panel.data
    assert strings_only(panel.data)
    assert [{"key": k, "value": v} for k, v in panel.data.items()]  # the panel's rows


def test_paperless_ngx_reads_an_emails_html_body_through_put_tika_text(
        shared_stack: Stack, http) -> None:
    """paperless_mail's tika_parse: the HTML body as a string, Content-Type text/html, no
    name; a fragment that does not start with <html> still reads as HTML."""
    html = ("<div><p>Dear customer,</p><p>your invoice <b>4711</b> is attached.</p>"
            "<p>Regards</p></div>")
    with TikaClient(tika_url=tika_url(shared_stack)) as client:
        parsed = client.tika.as_text.from_buffer(html, "text/html")
    expected = v1_text(http, "body.html", html.encode())
    assert parsed.content == expected
    assert "4711" in parsed.content and "<p>" not in parsed.content
    assert parsed.type == "text/html"


# --- the other calls of each client -------------------------------------------------------
# tika-python's detector (detectType1) opens the file and never closes it: its warning only.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("name", ["pdf/raw_text.pdf", "docx/raw_text.docx", "png/raw_text.png",
                                  "no_ext/msg_standardized_text", "csv/raw_text.csv"])
def test_tika_python_detects_the_type_the_upload_path_detects(name: str, tika_python) -> None:
    path = C / name
    assert tika_python.detector.from_file(str(path)) == \
        detect(path.name, path.read_bytes())["mime_type"]


def test_tika_python_meta_service_gives_tikas_metadata_contract(tika_python) -> None:
    path = C / "docx/raw_text.docx"
    parsed = tika_python.parser.from_file(str(path), service="meta")
    metadata = parsed["metadata"]
    assert parsed["status"] == 200
    assert metadata["Content-Type"] == FORMATS["docx"].mime
    assert metadata["Content-Length"] == str(path.stat().st_size)
    assert metadata["resourceName"] == path.name  # recovered from filename=b'...'
    assert "textractd" in metadata["X-TIKA:Parsed-By"]
    assert "X-TIKA:content" not in metadata
    assert strings_only(metadata)


def test_tika_client_html_is_well_formed_xhtml_in_tikas_shape(tika_client, http) -> None:
    path = CORPUS / "py-pdf-sample-files/004-pdflatex-4-pages/pdflatex-4-pages.pdf"
    from_file = tika_client.tika.as_html.from_file(path, "application/pdf")
    from_buffer = tika_client.tika.as_html.from_buffer(path.read_bytes(), "application/pdf")
    text = v1_text(http, path.name, path.read_bytes())
    for parsed in (from_file, from_buffer):
        root = ElementTree.fromstring(parsed.content)
        assert root.tag == XHTML + "html"
        assert [child.tag for child in root] == [XHTML + "head", XHTML + "body"]
        head = root.find(XHTML + "head")
        assert head.find(XHTML + "title") is not None
        metas = {m.get("name"): m.get("content") for m in head.iter(XHTML + "meta")}
        assert metas["Content-Type"] == "application/pdf"
        body = root.find(XHTML + "body")
        pages = body.findall(XHTML + "div")
        # Pages where they are known (the job's page ends), as many as the document has.
        assert len(pages) == int(parsed.data.get("xmpTPg:NPages", "0"))
        assert all(page.get("class") == "page" for page in pages)
        assert body.findall(f".//{XHTML}p")
        assert "".join("".join(body.itertext()).split()) == \
            "".join(text.replace("\f", "").split())


def test_rmeta_is_a_list_with_the_container_first_its_content_as_the_handler_says(
        tika_client, http) -> None:
    path = C / "odt/raw_text.odt"
    [container] = tika_client.rmeta.as_html.from_file(path)  # POST /rmeta/form/html
    assert container.type == FORMATS["odt"].mime
    assert container.content.startswith("<html") and "<body>" in container.content
    assert container.data["X-TIKA:content_handler"] == "ToHTMLContentHandler"
    assert strings_only(container.data)
    [default] = http.put("/rmeta", content=path.read_bytes()).json()  # Tika's default: xml
    assert default["X-TIKA:content_handler"] == "ToXMLContentHandler"
    assert ElementTree.fromstring(default["X-TIKA:content"]).tag == XHTML + "html"
    as_xml = http.put("/tika", content=path.read_bytes(), headers={"Accept": "text/xml"})
    assert as_xml.headers["Content-Type"].startswith("text/xml")
    assert as_xml.text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    [ignored] = http.put("/rmeta/ignore", content=path.read_bytes()).json()
    assert "X-TIKA:content" not in ignored and ignored["Content-Type"] == container.type


# --- Tika's status codes ------------------------------------------------------------------
BROKEN_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer garbage\n%%EOF"


def test_a_document_that_cannot_be_parsed_is_422_on_tika_and_meta_and_an_exception_in_rmeta(
        http, tika_python) -> None:
    for path in ("/tika", "/tika/text", "/meta"):
        reply = http.put(path, content=BROKEN_PDF, headers={"Accept": "application/json"})
        assert reply.status_code == 422, (path, reply.text)
        assert reply.json()["error"]["code"] == "corrupt_document"
        assert len(reply.json()["error"]["job_id"]) == 32  # the job that failed
    reply = http.put("/rmeta/text", content=BROKEN_PDF)
    assert reply.status_code == 200
    [container] = reply.json()
    exception = container["X-TIKA:EXCEPTION:container_exception"]
    assert exception.startswith("textractd corrupt_document: ")
    assert "Traceback" not in exception and "File \"" not in exception
    assert container["Content-Type"] == "application/pdf" and container["X-TIKA:Parsed-By"]
    parsed = tika_python.parser.from_buffer(BROKEN_PDF)
    assert parsed["status"] == 200
    assert "corrupt_document" in parsed["metadata"]["X-TIKA:EXCEPTION:container_exception"]


def test_a_password_protected_document_is_422_or_an_rmeta_exception_whoever_finds_it(
        http, tmp_path) -> None:
    """Found on upload (an encrypted OOXML file: no job) or by the worker (a PDF that
    needs a user password): the same answers."""
    from msoffcrypto.format.ooxml import OOXMLFile

    office = io.BytesIO()
    with (C / "docx/raw_text.docx").open("rb") as source:
        OOXMLFile(source).encrypt("secret", office)
    locked_pdf = tmp_path / "locked.pdf"
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=pdfwrite",
                    "-sOwnerPassword=owner", "-sUserPassword=user",
                    f"-sOutputFile={locked_pdf}", str(C / "pdf/standardized_text.pdf")],
                   check=True, timeout=60)
    for data in (office.getvalue(), locked_pdf.read_bytes()):
        for path in ("/tika", "/meta"):
            reply = http.put(path, content=data, headers={"Accept": "application/json"})
            assert reply.status_code == 422, reply.text
            assert reply.json()["error"]["code"] == "encrypted_document"
        [container] = http.put("/rmeta/text", content=data).json()
        assert container["X-TIKA:EXCEPTION:container_exception"].startswith(
            "textractd encrypted_document: ")
    assert http.put("/detect/stream", content=office.getvalue()).text == \
        "application/x-tika-ooxml-protected"


def test_an_unknown_type_is_200_with_nothing_never_415(http) -> None:
    noise = bytes(range(256)) * 8
    reply = http.put("/tika", content=noise, headers={"Accept": "text/plain"})
    assert (reply.status_code, reply.text) == (200, "")
    assert "X-Job-ID" not in reply.headers  # nothing was queued
    [container] = http.put("/rmeta", content=noise).json()
    assert container["Content-Type"] == "application/octet-stream"
    assert container["X-TIKA:Parsed-By"]
    assert http.put("/detect/stream", content=noise).text == "application/octet-stream"


def test_gzip_and_deflate_uploads_read_as_the_plain_body(http) -> None:
    path = C / "docx/raw_text.docx"
    data = path.read_bytes()
    expected = v1_text(http, path.name, data)
    for encoding, body in (("gzip", gzip.compress(data)), ("deflate", zlib.compress(data))):
        reply = http.put("/tika/text", content=body, headers={
            "Content-Encoding": encoding, "Content-Disposition": "attachment; filename=a.docx"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["X-TIKA:content"] == expected


def test_the_upload_limit_holds_on_the_tika_routes_counted_inflated(http) -> None:
    """The same reader as /v1: a gzip body that inflates past MAX_CONTENT_LENGTH (16 MiB)
    is refused, however small it travels."""
    bomb = gzip.compress(b"\0" * (17 * 1024 * 1024))
    assert len(bomb) < 100_000
    reply = http.put("/tika/text", content=bomb, headers={"Content-Encoding": "gzip"})
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("disposition", ["attachment; filename=b'raw_text.csv'",
                                         "attachment; filename=raw text.csv",
                                         'attachment; filename="raw_text.csv"'])
def test_a_garbled_filename_still_names_the_document(disposition: str, http) -> None:
    data = (C / "csv/raw_text.csv").read_bytes()
    reply = http.put("/rmeta/text", content=data, headers={"Content-Disposition": disposition})
    [container] = reply.json()
    assert container["Content-Type"] == "text/csv"
    assert container["X-TIKA:content"] == v1_text(http, "raw_text.csv", data)


def test_a_name_that_says_nothing_leaves_the_type_to_the_content(http) -> None:
    data = (C / "docx/raw_text.docx").read_bytes()
    reply = http.put("/tika/text", content=data, headers={
        "Content-Disposition": "attachment; filename=%%%;;;"})
    assert reply.json()["Content-Type"] == FORMATS["docx"].mime


# --- option headers -----------------------------------------------------------------------
def test_pdf_ocr_strategy_ocr_only_reads_a_scan_as_method_tesseract(http) -> None:
    path = C / "pdf/ocr_text.pdf"
    data = path.read_bytes()
    reply = http.put("/tika", content=data, headers={"Accept": "text/plain",
                                                     "X-Tika-PDFOcrStrategy": "ocr_only"})
    assert reply.text == v1_text(http, path.name, data, method="tesseract")
    assert reply.text.strip()
    plain = http.put("/tika", content=data, headers={"Accept": "text/plain",
                                                     "X-Tika-PDFOcrStrategy": "no_ocr"})
    assert plain.text == v1_text(http, path.name, data)


def test_skip_ocr_gives_an_image_no_text_and_queues_nothing(http) -> None:
    reply = http.put("/tika/text", content=(C / "png/raw_text.png").read_bytes(),
                     headers={"X-Tika-OCRskipOcr": "true"})
    assert reply.status_code == 200
    assert reply.json()["X-TIKA:content"] == ""
    assert reply.json()["Content-Type"] == "image/png"
    assert "X-Job-ID" not in reply.headers


def test_an_ocr_strategy_tika_does_not_know_is_400(http) -> None:
    reply = http.put("/tika", content=b"hello", headers={"X-Tika-PDFOcrStrategy": "maybe"})
    assert reply.status_code == 400


# --- the rest of the surface --------------------------------------------------------------
def test_meta_answers_csv_when_asked(http) -> None:
    reply = http.put("/meta", content=(C / "pdf/raw_text.pdf").read_bytes(),
                     headers={"Accept": "text/csv"})
    assert reply.headers["Content-Type"].startswith("text/csv")
    rows = {row[0]: row[1:] for row in csv.reader(io.StringIO(reply.text))}
    assert rows["Content-Type"] == ["application/pdf"]
    assert "textractd" in rows["X-TIKA:Parsed-By"]


def test_meta_field_gives_one_key_or_404(http) -> None:
    data = (C / "pdf/raw_text.pdf").read_bytes()
    assert http.put("/meta/Content-Type", content=data).json() == {
        "Content-Type": "application/pdf"}
    assert http.put("/meta/no:such-key", content=data).status_code == 404


def test_root_version_and_greeting_answer_plain_pages(http) -> None:
    root = http.get("/")
    assert root.status_code == 200 and "/rmeta" in root.text and "textractd" in root.text
    assert http.get("/version").text.startswith("textractd ")
    assert "Please PUT" in http.get("/tika").text


def test_the_key_works_as_basic_password_or_user_and_nothing_else_gets_in(
        shared_stack: Stack) -> None:
    url = f"{shared_stack.url}/version"
    key = shared_stack.api_key
    assert httpx.get(url, auth=("tika", key)).status_code == 200
    assert httpx.get(url, auth=(key, "")).status_code == 200
    assert httpx.get(url, headers={"Authorization": "Bearer " + key}).status_code == 200
    assert httpx.get(url, auth=("tika", key + "x")).status_code == 403
    assert httpx.get(url).status_code == 401
    garbled = {"Authorization": "Basic %%%not-base64"}
    assert httpx.get(url, headers=garbled).status_code == 401
    # The Basic password opens /v1 too: one key, presented as the client can.
    assert httpx.get(f"{shared_stack.url}/v1/formats", auth=("tika", key)).status_code == 200


# --- a stack of its own: anonymous loopback, a second port, tenants, waits, Redis ---------
@pytest.fixture(scope="module")
def own_stack() -> Iterator[Stack]:
    stack = Stack(env={"WORKER_PROCESSES": "1", "TIKA_ANONYMOUS": "loopback",
                       "TIKA_PORT": str(free_port()), "TIKA_WAIT": "3"})
    stack.env["API_KEY"] = f"{stack.api_key},acme:acme-{stack.api_key}"
    stack.start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def test_keyless_loopback_reaches_the_tika_routes_only_and_is_warned_of(own_stack) -> None:
    data = (C / "txt/raw_text.txt").read_bytes()
    reply = httpx.put(f"{own_stack.url}/tika", content=data, headers={"Accept": "text/plain"},
                      timeout=30)
    assert reply.status_code == 200 and reply.text
    assert httpx.post(f"{own_stack.url}/v1/extract", content=data).status_code == 401
    assert any(e.get("event") == "tika.anonymous_access" and e.get("level") == "warning"
               for e in own_stack.log_events("api"))


def test_tika_port_is_a_second_listener_of_the_same_app(own_stack) -> None:
    port = own_stack.env["TIKA_PORT"]
    reply = httpx.put(f"http://tika:{own_stack.api_key}@127.0.0.1:{port}/detect/stream",
                      content=(C / "pdf/raw_text.pdf").read_bytes())
    assert reply.text == "application/pdf"


def test_a_tenants_tika_job_is_that_tenants_own(own_stack) -> None:
    acme = f"acme-{own_stack.api_key}"
    reply = httpx.put(f"{own_stack.url}/tika/text", content=b"tenant text",
                      auth=("tika", acme), timeout=30)
    job_id = reply.headers["X-Job-ID"]
    job_url = f"{own_stack.url}/v1/jobs/{job_id}"
    assert httpx.get(job_url, headers={"X-API-Key": acme}).json()["state"] == "done"
    assert httpx.get(job_url, headers={"X-API-Key": own_stack.api_key}).status_code == 404


def test_a_job_not_done_within_tika_wait_is_503_with_retry_after_and_runs_on(
        own_stack) -> None:
    own_stack.supervisorctl("stop", "workers")
    try:
        reply = httpx.put(f"{own_stack.url}/tika", content=b"queued while no worker runs",
                          auth=("tika", own_stack.api_key), timeout=30)
        assert reply.status_code == 503
        assert int(reply.headers["Retry-After"]) > 0
        job_id = reply.json()["error"]["job_id"]
    finally:
        own_stack.supervisorctl("start", "workers")
    job_url = f"{own_stack.url}/v1/jobs/{job_id}"
    wait_for(lambda: httpx.get(job_url, headers={"X-API-Key": own_stack.api_key}
                               ).json()["state"] == "done", 60, "the job to finish")


def test_redis_down_is_503_with_retry_after_never_a_hang(own_stack) -> None:
    own_stack.supervisorctl("stop", "redis")
    try:
        reply = httpx.put(f"{own_stack.url}/tika/text", content=b"no store",
                          auth=("tika", own_stack.api_key), timeout=30)
        assert reply.status_code == 503
        assert int(reply.headers["Retry-After"]) > 0
    finally:
        own_stack.supervisorctl("start", "redis")


@pytest.mark.slow
def test_a_broken_extractor_is_503_with_retry_after_not_the_documents_422(make_stack,
                                                                          tools) -> None:
    """A PDF waiting behind an open pdf breaker fails extractor_unavailable: Tika's
    clients hear "try later", not "this document is bad"."""
    tools.mode("pdftotext", "segv")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, MAX_ATTEMPTS=6, BREAKER_MAX_WAIT=2,
                                     CIRCUIT_BREAKER_RECOVERY_TIMEOUT=60))
    pdf = (C / "pdf/standardized_text.pdf").read_bytes()
    key = {"X-API-Key": stack.api_key}
    # Three distinct documents crashing the tool: evidence about the tool, not a document.
    for n in range(3):
        httpx.post(f"{stack.url}/v1/jobs", params={"filename": f"{n}.pdf"},
                   content=pdf + b"%% copy %d\n" % n, headers=key)
    with stack.redis() as r:
        wait_for(lambda: r.hget(breaker_key("pdf"), "state") == b"open", 30,
                 "the pdf breaker to open")
    for path in ("/tika/text", "/rmeta/text"):
        reply = httpx.put(f"{stack.url}{path}", content=pdf, headers=key, timeout=30)
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["code"] == "extractor_unavailable"
        assert int(reply.headers["Retry-After"]) > 0


# --- the decisions, in-process ------------------------------------------------------------
@pytest.mark.parametrize("accept,expected", [
    (None, "text/plain"), ("*/*", "text/plain"), ("application/json", "application/json"),
    ("text/html", "text/html"), ("text/xml", "text/xml"),
    ("text/html;q=0.5, application/json", "application/json"),
    ("text/*", "text/plain"), ("image/png", "text/plain"),
    ("application/json;q=0, text/html", "text/html"),
])
def test_accept_picks_tikas_output(accept: str | None, expected: str) -> None:
    offers = ("text/plain", "text/html", "application/xhtml+xml", "text/xml",
              "application/xml", "application/json")
    assert negotiate(accept, offers, "text/plain") == expected


@pytest.mark.parametrize("raw,expected", [
    ("b'x.pdf'", "x.pdf"), ('b"a b.docx"', "a b.docx"), ("plain.pdf", "plain.pdf"),
    ("", None), (None, None), ("b'", "b'")])
def test_a_bytes_repr_filename_gives_the_name_inside(raw, expected) -> None:
    assert usable_filename(raw) == expected


@pytest.mark.parametrize("content_type,expected", [
    ("text/html; charset=utf-8", "html"), ("application/pdf", "pdf"), ("text/plain", "txt"),
    ("image/jpeg", "jpg"), ("application/octet-stream", None), ("application/xml", None),
    ("multipart/form-data; boundary=x", None), ("", None), ("application/x-unknown", None)])
def test_content_type_hints_as_tika_takes_it(content_type: str, expected) -> None:
    assert hinted_ext(content_type) == expected


def test_name_then_hint_then_content_and_contradictions_are_passed_over() -> None:
    pdf = (C / "pdf/raw_text.pdf").read_bytes()
    csv_bytes = (C / "csv/raw_text.csv").read_bytes()
    assert tell_format("a.csv", csv_bytes, None).ext == "csv"
    assert tell_format(None, csv_bytes, "csv").ext == "csv"
    assert tell_format(None, csv_bytes, None).ext == "txt"
    assert tell_format("a.docx", pdf, "png").ext == "pdf"  # both contradicted
    with pytest.raises(TypedOnly) as unknown:
        tell_format("a.pdf", bytes(range(256)), None)
    assert unknown.value.fmt is None and unknown.value.mime == "application/octet-stream"


@pytest.mark.parametrize("headers,method,skip", [
    ({}, "", False), ({"X-Tika-PDFOcrStrategy": "ocr_only"}, "tesseract", False),
    ({"X-Tika-PDFOcrStrategy": "OCR_AND_TEXT"}, "tesseract", False),
    ({"X-Tika-PDFOcrStrategy": "no_ocr"}, "", False),
    ({"X-Tika-PDFOcrStrategy": "auto"}, "", False),
    ({"X-Tika-PDFOcrStrategy": "ocr_only", "X-Tika-OCRskipOcr": "true"}, "", True),
    ({"X-Tika-OCRLanguage": "deu", "X-Tika-PDFextractInlineImages": "true"}, "", False)])
def test_option_headers_become_textractd_methods(headers, method, skip) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy
    assert tuple(tika_options(CIMultiDictProxy(CIMultiDict(headers)))) == (method, skip)


def test_the_metadata_is_tikas_keys_with_only_strings() -> None:
    job = {"id": "a" * 32, "format": "pdf", "bytes": 6183, "filename": "x.pdf",
           "duration_ms": 12.6, "metadata": {
               "content_type": "application/pdf", "pages": 3, "title": "T", "author": "A",
               "created": "2020-11-21T00:00:00Z", "modified": "2021-01-02T03:04:05Z",
               "producer": "P", "creator": "W", "chars": 10, "words": 2, "sha256": "ab",
               "keywords": "k1, k2", "language": "en"}}
    metadata = tika_metadata(Parsed("application/pdf", "text", job))
    assert strings_only(metadata)
    assert metadata["Content-Length"] == "6183"
    assert metadata["xmpTPg:NPages"] == "3"
    assert metadata["dcterms:created"] == "2020-11-21T00:00:00Z"
    assert metadata["pdf:docinfo:created"] == "2020-11-21T00:00:00Z"
    assert metadata["dc:title"] == "T" and metadata["dc:creator"] == "A"
    assert metadata["X-TIKA:parse_time_millis"] == "13"
    assert metadata["X-TIKA:Parsed-By"] == ["textractd", "textract.parsers.pdf_parser"]
    bare = tika_metadata(Parsed("application/octet-stream", "", None))
    assert set(bare) == {"Content-Type", "X-TIKA:Parsed-By"}
    rows = list(csv.reader(io.StringIO(as_csv({"a": "x,y", "b": ["1", "2"]}))))
    assert rows == [["a", "x,y"], ["b", "1", "2"]]


def test_xhtml_has_a_page_div_per_page_a_p_per_paragraph_and_stays_well_formed() -> None:
    text = "Page one\n\nsecond <para> & more\f\x01Page two\x0b\f"
    ends = [text.index("\f") + 1, len(text)]
    root = ElementTree.fromstring(xhtml(text, {"dc:title": "A & B", "k": ["1", "2"]}, ends,
                                        declaration=True))
    body = root.find(XHTML + "body")
    pages = body.findall(XHTML + "div")
    assert [len(page.findall(XHTML + "p")) for page in pages] == [2, 1]
    assert pages[0].findall(XHTML + "p")[1].text == "second <para> & more"
    assert root.find(f"{XHTML}head/{XHTML}title").text == "A & B"
    assert [m.get("content") for m in root.iter(XHTML + "meta") if m.get("name") == "k"] == \
        ["1", "2"]
    unpaged = ElementTree.fromstring(xhtml("one\n\ntwo", {}, None))
    assert [p.text for p in unpaged.iter(XHTML + "p")] == ["one", "two"]


def test_basic_credentials_give_the_key_from_password_or_user() -> None:
    from aiohttp.test_utils import make_mocked_request

    from daemon.api.middleware import presented_key

    def basic(raw: str) -> str | None:
        token = base64.b64encode(raw.encode()).decode()
        return presented_key(make_mocked_request("GET", "/", headers={
            "Authorization": f"Basic {token}"}))

    assert basic("tika:k3y") == "k3y"
    assert basic("k3y:") == "k3y"
    assert basic("user:pa:ss") == "pa:ss"
    assert basic(":") is None
