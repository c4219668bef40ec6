"""The shared corpus of real documents: where it is and what its MANIFEST.tsv says.

One reader for the tests (tests/conftest.py) and the benchmark (bench/workload.py). The
manifest is tab-separated: document (a path under the corpus), format, textract_kwargs
(a Python dict literal, or "-") and expected ("-", a text file under the corpus, or
STANDARD:<sentence>).
"""

from __future__ import annotations

import ast
import csv
import os
from dataclasses import dataclass
from pathlib import Path

from daemon.config import ROOT

# $TEXTRACTD_CORPUS, else the corpus beside the checkout (../shared/corpus).
CORPUS = Path(os.environ.get("TEXTRACTD_CORPUS") or ROOT.parent / "shared" / "corpus")
AUDIO = frozenset({"mp3", "ogg", "wav"})  # out of scope: the manifest lists them, we skip them


@dataclass(frozen=True)
class CorpusDoc:
    corpus: Path
    id: str  # the document's path under the corpus, as the manifest names it
    format: str
    kwargs: dict  # for textract.process: extension= for files without one
    expected: str  # "-", a path, or STANDARD:...

    @property
    def path(self) -> Path:
        return self.corpus / self.id

    def expected_text(self) -> str | None:
        if self.expected == "-":
            return None
        if self.expected.startswith("STANDARD:"):
            sentence = self.expected.removeprefix("STANDARD:")
            if sentence.startswith("standardized_text.txt"):
                return (self.path.parent / "standardized_text.txt").read_text()
            return sentence
        return (self.corpus / self.expected).read_text()


def corpus_documents(corpus: Path = CORPUS) -> list[CorpusDoc]:
    """Every non-audio document of the manifest, in its order."""
    with open(corpus / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [CorpusDoc(corpus, row["document"], row["format"],
                      {} if row["textract_kwargs"] == "-"
                      else ast.literal_eval(row["textract_kwargs"]),
                      row["expected"])
            for row in rows if row["format"] not in AUDIO]
