"""A PPTX's text read from its slides' XML (daemon/documents/slides.py) is textract's text.

Presentations are built with python-pptx (what textract reads them with) and then bent
by hand where python-pptx itself would not write them: slides out of file order, a part
typed otherwise, a relationship to nothing. Each is compared with textract.process on the
same file; what the walk cannot vouch for goes to textract, with textract's outcome.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pptx
import pytest
import textract
from PIL import Image
from pptx.util import Inches

from daemon.documents import slides
from daemon.documents.extract import extract
from daemon.documents.formats import FORMATS
from daemon.documents.metadata import read_metadata
from daemon.documents.pages import page_texts
from tests.conftest import fails_as_textract_fails


def _presentation(path: Path) -> Path:
    """Five slides: placeholders, text boxes with line breaks and tabs, a table, a group,
    a picture, an empty slide, characters that XML escapes."""
    prs = pptx.Presentation()
    first = prs.slides.add_slide(prs.slide_layouts[1])  # title and content
    first.shapes.title.text = "Quarterly <results> & plans"
    body = first.placeholders[1].text_frame
    body.text = "first point"
    body.add_paragraph().text = "second\tpoint\vwith a break"
    second = prs.slides.add_slide(prs.slide_layouts[6])  # blank
    box = second.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame
    box.text = "a box"
    run = box.paragraphs[0].add_run()
    run.text = " and a second run, \u00e9t\u00e9 \u2014 \U0001F600"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(3), Inches(4), Inches(1)).table
    table.cell(0, 0).text = "a table's text, which textract skips"
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(5), Inches(2), Inches(1)).text_frame.text = \
        "text in a group, skipped too"
    prs.slides.add_slide(prs.slide_layouts[6])  # empty
    fourth = prs.slides.add_slide(prs.slide_layouts[6])
    image = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(image, "PNG")
    image.seek(0)
    fourth.shapes.add_picture(image, Inches(1), Inches(1))
    fourth.shapes.add_textbox(Inches(1), Inches(3), Inches(2), Inches(1)).text_frame.text = \
        "after the picture"
    fifth = prs.slides.add_slide(prs.slide_layouts[0])
    fifth.shapes.title.text = "the end"
    prs.save(path)
    return path


def _rewritten(source: Path, target: Path, **changes) -> Path:
    """A copy of the package with members changed: name -> function of its bytes."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename in changes:
                data = changes[info.filename](data)
            zout.writestr(info, data)
    return target


def _textract(path: Path) -> str:
    return textract.process(str(path)).decode("utf-8")


def test_the_walk_gives_textracts_text_and_a_slice_per_slide(tmp_path: Path) -> None:
    path = _presentation(tmp_path / "deck.pptx")
    expected = _textract(path)

    found = slides.read(path)
    extraction = extract(path, "pptx")

    assert found is not None and len(found) == 5 and found[2] == []
    assert extraction.text == expected
    assert "table" not in expected and "group" not in expected
    assert extraction.page_ends is not None
    pages = page_texts(extraction.text, extraction.page_ends)
    assert len(pages) == 5 and pages[2] == ""
    assert pages[0].startswith("Quarterly <results> & plans") and "the end" in pages[4]
    # the metadata's pages: the slides listed again, or the count the walk gives it
    assert read_metadata(path, FORMATS["pptx"], expected).values["pages"] == 5
    assert read_metadata(path, FORMATS["pptx"], expected, slides=7).values["pages"] == 7


def test_slides_come_in_the_presentations_order_not_the_files(tmp_path: Path) -> None:
    source = _presentation(tmp_path / "deck.pptx")

    def last_first(xml: bytes) -> bytes:
        ids = re.findall(rb"<p:sldId [^>]*/>", xml)
        return xml.replace(b"".join(ids), b"".join([ids[-1], *ids[:-1]]))

    path = _rewritten(source, tmp_path / "reordered.pptx",
                      **{"ppt/presentation.xml": last_first})
    expected = _textract(path)
    assert expected.startswith("the end")
    assert extract(path, "pptx").text == expected
    assert slides.read(path)[0] == ["the end"]


# Packages python-pptx reads otherwise, or not at all: name -> {member: change}.
BENDS = {
    "a_slide_typed_as_plain_xml": {"[Content_Types].xml": lambda xml: xml.replace(
        b'PartName="/ppt/slides/slide1.xml" ContentType="application/vnd.'
        b'openxmlformats-officedocument.presentationml.slide+xml"',
        b'PartName="/ppt/slides/slide1.xml" ContentType="application/xml"')},
    "a_template_not_a_deck": {"[Content_Types].xml": lambda xml: xml.replace(
        b"presentationml.presentation.main+xml", b"presentationml.template.main+xml")},
    "a_slide_whose_part_is_missing": {"ppt/_rels/presentation.xml.rels": lambda xml:
                                      xml.replace(b'Target="slides/slide2.xml"',
                                                  b'Target="slides/gone.xml"')},
    "a_run_without_its_text_element": {"ppt/slides/slide5.xml": lambda xml: re.sub(
        rb"<a:t>the end</a:t>", b"", xml)},
}


@pytest.mark.parametrize("bend", sorted(BENDS))
def test_a_package_python_pptx_reads_otherwise_goes_to_textract_and_fails_as_it_fails(
        tmp_path: Path, bend: str) -> None:
    path = _rewritten(_presentation(tmp_path / "deck.pptx"), tmp_path / f"{bend}.pptx",
                      **BENDS[bend])

    assert slides.read(path) is None
    fails_as_textract_fails(path, "pptx")


def test_a_relationship_to_a_missing_part_is_dropped_as_python_pptx_drops_it(
        tmp_path: Path) -> None:
    source = _presentation(tmp_path / "deck.pptx")
    path = _rewritten(source, tmp_path / "dangling.pptx", **{
        "ppt/slides/_rels/slide4.xml.rels": lambda xml: xml.replace(
            b'Target="../media/image1.png"', b'Target="../media/gone.png"')})

    assert slides.read(path) is not None
    assert extract(path, "pptx").text == _textract(path)
