"""`textractd extract` against running stacks: the whole corpus folder, an interrupted
and resumed run, the bar in a real pseudo-terminal, plain lines without one, its exit
codes, and back-offs on 503 that lose no document."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from daemon.config import ROOT
from daemon.store import FINAL_STATES, job_key
from devtools.corpus import CORPUS, corpus_documents
from devtools.stack import Stack, free_port, wait_for
from tests.client import Client
from tests.conftest import squash

COMMAND = [sys.executable, "-m", "daemon.cli"]
ALL_FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file())
# Expected texts that pdftotext (the default method) does not give, as upstream says.
EXPECTED_NEEDS_OTHER_METHOD = {"textract-tests/pdf/ocr_text.pdf",
                               "textract-tests/pdf/two_column.pdf"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack(env={"WORKER_PROCESSES": "2", "RESULT_TTL": "900"}).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def environment(stack: Stack | None, home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEXTRACTD_HOME": str(home), **extra}
    env.pop("TEXTRACTD_URL", None)
    env.pop("TEXTRACTD_API_KEY", None)
    if stack is not None:
        env |= {"TEXTRACTD_URL": stack.url, "TEXTRACTD_API_KEY": stack.api_key}
    return env


def textractd(stack: Stack | None, tmp_path: Path, *args: str, stdin: bytes | None = None,
              timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run([*COMMAND, *args], input=stdin, capture_output=True,
                          timeout=timeout, cwd=tmp_path, env=environment(stack, home, **extra))


def extract(stack: Stack | None, tmp_path: Path, *args: str, **options: object
            ) -> subprocess.CompletedProcess:
    return textractd(stack, tmp_path, "extract", *args, **options)  # type: ignore[arg-type]


def manifest(path: Path) -> list[dict]:
    """Every line of a JSON Lines file, each parsed; fails on a cut or invalid line."""
    data = path.read_text()
    assert data == "" or data.endswith("\n"), "the last line is cut"
    return [json.loads(line) for line in data.splitlines()]


def relative(record: dict) -> str:
    return Path(record["key"]).relative_to(CORPUS).as_posix()


# --- the corpus -------------------------------------------------------------------------
def test_the_whole_corpus_folder_comes_out_as_the_service_answers_each_document(
        stack: Stack, tmp_path: Path) -> None:
    out, jsonl = tmp_path / "out", tmp_path / "run.jsonl"
    done = extract(stack, tmp_path, str(CORPUS), "-o", str(out), "--jsonl", str(jsonl))
    stderr = done.stderr.decode()
    records = {relative(r): r for r in manifest(jsonl)}
    assert sorted(records) == [p.relative_to(CORPUS).as_posix() for p in ALL_FILES]
    failed = {name for name, r in records.items() if r["state"] != "done"}
    assert done.returncode == (1 if failed else 0), stderr
    # Each failure listed at the end with its code.
    for name in failed:
        assert f"{name}: {records[name]['error']['code']}: " in stderr
    # Every document as POST /v1/extract answers it: the same text, or the same refusal.
    client = Client(stack)
    for name, record in records.items():
        reply = client.upload(Path(name).name, (CORPUS / name).read_bytes(),
                              path="/v1/extract", wait=120)
        text_file = out / (name + ".txt")
        if reply.status == 200:
            assert record["state"] == "done", (name, record)
            assert text_file.read_bytes().decode() == reply.text, name
            assert record["chars"] == len(reply.text) and record["output"] == str(text_file)
            assert record["sha256"] and record["id"] and record["duration_ms"] is not None
            assert record["metadata"]["chars"] == len(reply.text)
            if name.endswith(".pdf"):
                assert record["pages"] >= 1 and record["metadata"]["pages"] == record["pages"]
        else:
            assert record["error"]["code"] == reply.json()["error"]["code"], name
            assert not text_file.exists()
    # And the manifest's expected texts where it gives them.
    for doc in corpus_documents():
        expected = doc.expected_text()
        if expected is not None and doc.id not in EXPECTED_NEEDS_OTHER_METHOD:
            assert squash((out / (doc.id + ".txt")).read_text()) == squash(expected), doc.id
    print(stderr.splitlines()[len(records)])  # the summary line, for the record


def test_without_a_terminal_each_document_is_one_plain_line(stack: Stack,
                                                            tmp_path: Path) -> None:
    folder = CORPUS / "textract-tests" / "pdf"
    count = sum(1 for p in folder.iterdir())
    done = extract(stack, tmp_path, str(folder), "-o", str(tmp_path / "out"))
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 0, lines
    assert "\r" not in done.stderr.decode() and "%|" not in done.stderr.decode()
    per_document = [line for line in lines if re.match(rf"\[\d+/{count}\] done ", line)]
    assert len(per_document) == count
    assert re.fullmatch(rf"extracted {count} of {count} files \([\d.]+ MB\) in [\d.]+ s, "
                        r"[\d.]+ files/s", lines[-1]), lines[-1]


def test_a_real_terminal_gets_a_progress_bar_with_files_done_of_total(
        stack: Stack, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    screen = io.StringIO()
    child = pexpect.spawn(COMMAND[0], [*COMMAND[1:], "extract", str(CORPUS), "-o",
                                       str(tmp_path / "out")],
                          env=environment(stack, home), cwd=str(tmp_path), encoding="utf-8",
                          dimensions=(24, 140), timeout=300)
    child.logfile_read = screen
    total = len(ALL_FILES)
    child.expect(rf"\| +\d+/{total} files \[")
    child.expect(pexpect.EOF)
    child.close()
    bars = [line.strip() for line in re.split(r"[\r\n]", screen.getvalue())
            if f"/{total} files [" in line]
    bar = re.compile(rf"\d+%\|.*\| (\d+)/{total} files \[\d\d:\d\d<(\d\d:\d\d|\?), +"
                     r"([\d.]+|\?) files/s, [\d.]+ MB/[\d.]+ MB, (\d+) failed\]")
    matched = [bar.search(line) for line in bars]
    assert all(matched), bars
    assert int(matched[-1].group(1)) == total  # type: ignore[union-attr]
    assert len({m.group(1) for m in matched if m}) > 2, "the bar moved as files finished"
    assert not re.search(r"\[\d+/\d+\] done", screen.getvalue()), "no plain lines on a tty"
    assert child.exitstatus == 1  # the corpus has documents the service refuses
    print(bars[-1])


# --- interrupted, then resumed ------------------------------------------------------------
def jobs_created_since(stack: Stack, since: float) -> list[str]:
    with stack.redis() as r:
        found = []
        for key in r.scan_iter(job_key("*")):
            filename, created = r.hmget(key, "filename", "created_at")
            if created is not None and float(created) >= since:
                found.append(filename.decode())
        return found


def every_job_final(stack: Stack) -> bool:
    with stack.redis() as r:
        return all(r.hget(key, "state").decode() in FINAL_STATES
                   for key in r.scan_iter(job_key("*")))


def test_an_interrupted_run_leaves_no_partial_text_and_resume_redoes_only_the_rest(
        stack: Stack, tmp_path: Path) -> None:
    out, jsonl = tmp_path / "out", tmp_path / "run.jsonl"
    home = tmp_path / "home"
    home.mkdir()
    args = [*COMMAND, "extract", str(CORPUS), "-o", str(out), "--jsonl", str(jsonl), "-j", "2"]
    with open(tmp_path / "stderr", "wb") as err:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path,
                                   env=environment(stack, home))
        wait_for(lambda: jsonl.exists() and jsonl.read_text().count("\n") >= 10, 120,
                 "ten documents in the manifest")
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(60) == 130
    first = manifest(jsonl)
    assert 10 <= len(first) < len(ALL_FILES), "interrupted mid-run"
    assert "interrupted: " in (tmp_path / "stderr").read_text()
    assert list(out.rglob("*textractd-tmp")) == []
    done_first = {r["key"] for r in first if r["state"] == "done"}
    written = {str(p) for p in out.rglob("*.txt")}
    assert written == {r["output"] for r in first if r["state"] == "done"}
    for record in first:
        if record["state"] == "done":
            assert len(Path(record["output"]).read_bytes().decode()) == record["chars"]

    # The jobs the interrupted run left in flight finish; then only new ones count.
    wait_for(lambda: every_job_final(stack), 120, "every job of the first run to end")
    since = time.time()
    second = extract(stack, tmp_path, str(CORPUS), "-o", str(out), "--jsonl", str(jsonl),
                       "--resume")
    assert second.returncode == 1, second.stderr  # the refused documents again
    records = manifest(jsonl)
    added = records[len(first):]
    assert {r["key"] for r in added}.isdisjoint(done_first), "nothing done was redone"
    assert {r["key"] for r in records} == {str(p.resolve()) for p in ALL_FILES}
    assert len(added) == len(ALL_FILES) - len(done_first)
    created = jobs_created_since(stack, since)
    assert sorted(created) == sorted(r["filename"] for r in added if r["id"]), \
        "the service made a job for each document not done before, and no other"
    assert f"{len(done_first)} skipped (done before)" in second.stderr.decode()


def test_resume_redoes_a_document_whose_bytes_changed_or_whose_text_is_gone(
        stack: Stack, tmp_path: Path) -> None:
    folder, jsonl = tmp_path / "notes", tmp_path / "m.jsonl"
    folder.mkdir()
    for name in ("kept", "changed", "lost"):
        (folder / f"{name}.txt").write_text(f"{name} as it was\n")
    assert extract(stack, tmp_path, str(folder), "--jsonl", str(jsonl)).returncode == 0
    (folder / "changed.txt").write_text("changed since\n")
    (folder / "lost.txt.txt").unlink()
    again = extract(stack, tmp_path, str(folder), "--jsonl", str(jsonl), "--resume")
    assert again.returncode == 0, again.stderr
    added = manifest(jsonl)[3:]
    assert sorted(Path(r["key"]).name for r in added) == ["changed.txt", "lost.txt"]
    assert (folder / "changed.txt.txt").read_text() == "changed since\n"
    assert (folder / "lost.txt.txt").read_text() == "lost as it was\n"
    assert "1 skipped (done before)" in again.stderr.decode()


# --- exit codes -------------------------------------------------------------------------
def test_exit_0_when_every_document_was_extracted(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    for n, name in enumerate(["a.txt", "b.txt", "sub/c.txt"]):
        (folder / name).write_text(f"note {n},with text\n")
    done = extract(stack, tmp_path, str(folder))
    assert done.returncode == 0, done.stderr
    assert (folder / "sub" / "c.txt.txt").read_text() == "note 2,with text\n"
    assert (folder / "a.txt.txt").read_text() == "note 0,with text\n"
    # Run again: its own outputs beside the inputs are not inputs.
    again = extract(stack, tmp_path, str(folder), "--jsonl", str(tmp_path / "m.jsonl"))
    assert again.returncode == 0
    assert len(manifest(tmp_path / "m.jsonl")) == 3
    # Nor are an -o folder and a manifest inside the folder walked, run after run.
    for _ in range(2):
        inside = extract(stack, tmp_path, str(folder), "-o", str(folder / "texts"),
                         "--jsonl", str(folder / "m.jsonl"))
        assert inside.returncode == 0, inside.stderr
        assert sorted(Path(r["key"]).name for r in manifest(folder / "m.jsonl")) == [
            "a.txt", "b.txt", "c.txt"]


@pytest.mark.parametrize("args, message", [
    (["extract", "no/such/file.pdf"], "no/such/file.pdf: no such file or folder"),
    (["extract", "--resume", "."], "--resume needs --jsonl"),
    (["extract", "--concurrency", "0", "."], "must be 1 or more"),
    (["extract"], "the following arguments are required: PATH"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_exit_2_on_a_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = textractd(None, tmp_path, *args)
    assert done.returncode == 2
    assert message in done.stderr.decode()


def test_exit_2_when_the_service_cannot_be_reached_or_refuses_the_key(
        stack: Stack, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("text")
    nowhere = extract(None, tmp_path, str(doc), "--url", f"http://127.0.0.1:{free_port()}",
                        "--key", "k")
    assert nowhere.returncode == 2
    assert "cannot reach the service" in nowhere.stderr.decode()
    refused = extract(stack, tmp_path, str(doc), "--key", "not-the-key", "--jsonl",
                        str(tmp_path / "m.jsonl"))
    assert refused.returncode == 2
    assert "stopped: forbidden" in refused.stderr.decode()
    assert manifest(tmp_path / "m.jsonl") == [], "a refused key fails no document"
    assert not (tmp_path / "doc.txt.txt").exists()


# --- inputs -------------------------------------------------------------------------------
def test_stdin_with_the_local_installations_env_file_prints_the_text(
        stack: Stack, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".env").write_text(f"PORT={stack.port}\nAPI_KEY=default:{stack.api_key}\n")
    done = subprocess.run([*COMMAND, "extract", "-", "--filename", "memo.txt"],
                          input=b"a memo from stdin\n", capture_output=True, timeout=60,
                          env=environment(None, home))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"a memo from stdin\n"


def test_include_and_exclude_globs_choose_the_files_of_a_folder(stack: Stack,
                                                              tmp_path: Path) -> None:
    folder = CORPUS / "textract-tests"
    jsonl = tmp_path / "m.jsonl"
    done = extract(stack, tmp_path, str(folder), "--include", "*.pdf", "--include",
                     "docx/*", "--exclude", "two_*", "--jsonl", str(jsonl), "--no-text")
    assert done.returncode == 0, done.stderr
    wanted = {p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("two_")
              and (p.suffix == ".pdf" or p.parent.name == "docx")}
    records = manifest(jsonl)
    assert {Path(r["key"]) for r in records} == wanted
    assert all(r["output"] is None and len(r["text"]) == r["chars"] for r in records)
    assert not list(folder.rglob("*.pdf.txt")), "--no-text writes no text file"


def test_an_api_restart_mid_run_is_waited_out_and_loses_no_document(
        stack: Stack, tmp_path: Path) -> None:
    jsonl, home = tmp_path / "run.jsonl", tmp_path / "home"
    home.mkdir()
    args = [*COMMAND, "extract", str(CORPUS), "-o", str(tmp_path / "out"), "--jsonl",
            str(jsonl), "-j", "2"]
    with open(tmp_path / "stderr", "wb") as err:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path,
                                   env=environment(stack, home))
        wait_for(lambda: jsonl.exists() and jsonl.read_text().count("\n") >= 10, 120,
                 "ten documents in the manifest")
        stack.supervisorctl("restart", "api")
        assert process.wait(300) == 1  # the refused documents, nothing else
    stderr = (tmp_path / "stderr").read_text()
    assert re.search(r"back-off: .*(Connect|Read|Remote|Protocol)", stderr), stderr
    records = manifest(jsonl)
    assert sorted(r["key"] for r in records) == sorted(str(p.resolve()) for p in ALL_FILES)
    refused = {r["error"]["code"] for r in records if r["state"] != "done"}
    assert refused <= {"unsupported_media_type", "bad_request"}, refused
    wait_for(stack.healthy, 60, "the api back")


# --- back-off -----------------------------------------------------------------------------
def test_503_answers_are_waited_out_and_no_document_is_lost(tmp_path: Path) -> None:
    busy = Stack(env={"MAX_QUEUE_DEPTH": "1", "WORKER_PROCESSES": "1"}).start()
    try:
        docs = [d for d in corpus_documents() if "standardized_text" in d.id
                and d.format in {"txt", "csv", "docx", "html", "eml", "odt", "pptx", "xlsx"}]
        assert len(docs) >= 6
        folder = tmp_path / "docs"
        for doc in docs:
            target = folder / doc.id
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(doc.path, target)
        done = extract(busy, tmp_path, str(folder), "-o", str(tmp_path / "out"), "-j", "4",
                         "--max-backoff", "0.5")
        stderr = done.stderr.decode()
        assert done.returncode == 0, stderr
        assert "back-off: queue_full (503)" in stderr
        assert re.search(rf"extracted {len(docs)} of {len(docs)} files .*; \d+ back-offs",
                         stderr), stderr
        for doc in docs:
            text = (tmp_path / "out" / (doc.id + ".txt")).read_text()
            assert "quickbrownfox" in squash(text).lower(), doc.id
    finally:
        busy.stop()
        shutil.rmtree(busy.root, ignore_errors=True)


def test_429_answers_are_waited_out_as_retry_after_says_and_no_document_is_lost(
        make_stack, tmp_path: Path) -> None:
    """One upload at a time for this key, eight at once from the command: the rest are
    answered 429 with Retry-After and sent again after it, none lost."""
    limited = make_stack(env={"MAX_UPLOADS_PER_KEY": "1", "WORKER_PROCESSES": "1"})
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(16):
        (folder / f"note{n}.txt").write_text(f"note number {n}\n")
    done = extract(limited, tmp_path, str(folder), "-j", "8", timeout=200)
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    waits = re.findall(r"back-off: rate_limited \(429\), Retry-After ([\d.]+); trying again "
                       r"in ([\d.]+) s", stderr)
    assert waits, stderr
    for asked, waited in waits:
        assert min(float(asked), 60) <= float(waited) <= min(float(asked), 60) * 1.1 + 0.05
    assert sorted(p.name for p in folder.glob("*.txt.txt")) == sorted(
        f"note{n}.txt.txt" for n in range(16))
    assert all((folder / f"note{n}.txt.txt").read_text() == f"note number {n}\n"
               for n in range(16))
