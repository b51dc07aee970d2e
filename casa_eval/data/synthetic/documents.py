"""Render one synthetic form (DocVQA-like): header, title, N labelled fields, maybe an items table; one question.

Layout, from the top: issuer name and address (left) with the title (right, or below when they would touch),
a rule, the fields (either `Label: value` rows on fill-in lines, or a grid of boxed cells with a small label
above the value; one or two columns), an items table for invoices and orders when it fits, a few lines of
boilerplate notes when they fit, a signature line on forms without items, and a footer. When the drawn font
size does not fit the page it is reduced one pixel at a time; the record holds the size actually used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from casa_eval.data.synthetic.forms import FormContent, FormField, answer_variants, make_form
from casa_eval.data.synthetic.rendering import Box, Rendered, doc_rng, draw_text, font, text_width
from casa_eval.data.synthetic.spec import SyntheticSpec

_MIN_FONT_PX = 8


@dataclass
class _Page:
    """A canvas plus the running state of one layout attempt."""

    image: Image.Image
    draw: ImageDraw.ImageDraw
    ink: int
    faint: int  # rules and borders: visible but clearly not text
    grey: int  # secondary text (small labels, footer)
    boxes: list[Box] = field(default_factory=list)

    def text(self, xy: tuple[int, int], text: str, fnt: ImageFont.FreeTypeFont, fill: int | None = None) -> None:
        self.boxes.append(draw_text(self.draw, xy, text, fnt, self.ink if fill is None else fill))

    def rule(self, x0: int, x1: int, y: int, width: int = 1) -> None:
        self.draw.line([(x0, y), (x1, y)], fill=self.faint, width=width)


def _line_height(fnt: ImageFont.FreeTypeFont) -> int:
    ascent, descent = fnt.getmetrics()
    return int(ascent + descent)


def render_document(spec: SyntheticSpec, doc_id: int) -> Rendered:
    """Render document `doc_id` of a `docvqa` spec; depends only on `(spec, doc_id)`.

    The record holds `question`, `answers` (exact value first), `question_label`, the drawn `fields`
    (`[{label, value}]` in reading order), `title`, `form_type`, `layout`, `columns`, `has_table`, and the
    difficulty values used: `font_size` (px) and `num_fields`. Raises ValueError when the spec's page is too
    small to hold the form even at 8 px.
    """
    content = make_form(doc_rng(spec, doc_id, "content"))
    style = doc_rng(spec, doc_id, "style")
    layout, columns = style.choice(["inline", "boxed"]), style.choice([1, 2])
    paper, ink = style.randint(240, 255), style.randint(10, 45)
    requested = doc_rng(spec, doc_id, "font").randint(spec.font_size_min, spec.font_size_max)
    pick = doc_rng(spec, doc_id, "fields")
    count = pick.randint(spec.fields_min, spec.fields_max)
    fields = [content.fields[i] for i in sorted(pick.sample(range(len(content.fields)), count))]
    asked = pick.choice(fields)
    # Every random draw happens above: shrinking the font below must not change what the form says.
    for size in range(requested, _MIN_FONT_PX - 1, -1):
        image = Image.new("L", (spec.image_width, spec.image_height), paper)
        page = _Page(image, ImageDraw.Draw(image), ink, faint=min(paper - 70, ink + 130), grey=ink + 80)
        drawn = _lay_out(page, content, fields, layout, columns, size)
        if drawn is not None:
            used_columns, has_table = drawn
            break
    else:
        raise ValueError(f"a {spec.image_width}x{spec.image_height} page cannot hold {count} fields at any font size")
    record = {
        "question": asked.question,
        "answers": answer_variants(asked.value),
        "question_label": asked.label,
        "fields": [{"label": f.label, "value": f.value} for f in fields],
        "title": content.title,
        "form_type": content.form_type,
        "layout": layout,
        "columns": used_columns,
        "has_table": has_table,
        "font_size": size,
        "num_fields": count,
    }
    return Rendered(page.image, record, page.boxes)


def _lay_out(
    page: _Page, content: FormContent, fields: list[FormField], layout: str, columns: int, size: int
) -> tuple[int, bool] | None:
    """Draw the whole form at font size `size`; `(columns used, table drawn)`, or None if it does not fit."""
    width, height = page.image.size
    margin = max(16, round(width * 0.07))
    small = font(max(_MIN_FONT_PX, round(size * 0.75)))
    footer_top = height - margin // 2 - _line_height(small)
    y = _header(page, content, size, margin)
    placed = (_inline_fields if layout == "inline" else _boxed_fields)(page, fields, columns, size, margin, y)
    if placed is None:
        return None
    used_columns, y = placed
    # Forms without line items end with a signature line; everything else must stay above it.
    signature_y = footer_top - round(2.4 * size) if not content.items else None
    content_bottom = (signature_y if signature_y is not None else footer_top) - size
    if y > content_bottom:
        return None
    table_bottom = _items_table(page, content, size, margin, y + size, content_bottom) if content.items else None
    has_table = table_bottom is not None
    _notes(page, content.notes, size, margin, (table_bottom or y) + size, content_bottom)
    if signature_y is not None:
        _signature(page, size, margin, signature_y)
    page.text((margin, footer_top), content.footer, small, page.grey)
    page_no = "Page 1 of 1"
    page.text((width - margin - text_width(page_no, small), footer_top), page_no, small, page.grey)
    if any(b[0] < 0 or b[1] < 0 or b[2] > width or b[3] > height for b in page.boxes):
        return None
    return used_columns, has_table


def _header(page: _Page, content: FormContent, size: int, margin: int) -> int:
    """Issuer block and title; returns the y below the rule that closes the header."""
    width = page.image.size[0]
    bold, small = font(size, bold=True), font(max(_MIN_FONT_PX, round(size * 0.8)))
    title_font = font(round(size * 1.5), bold=True)
    page.text((margin, margin), content.issuer, bold)
    page.text((margin, margin + _line_height(bold) + 2), content.issuer_address, small, page.grey)
    issuer_right = margin + max(text_width(content.issuer, bold), text_width(content.issuer_address, small))
    title_x = width - margin - text_width(content.title, title_font)
    block_bottom = margin + _line_height(bold) + 2 + _line_height(small)
    if title_x - issuer_right >= 2 * size:  # room beside the issuer block
        page.text((title_x, margin), content.title, title_font)
        bottom = max(block_bottom, margin + _line_height(title_font))
    else:
        top = block_bottom + size // 2
        page.text(((width - text_width(content.title, title_font)) // 2, top), content.title, title_font)
        bottom = top + _line_height(title_font)
    rule_y = bottom + size // 2
    page.rule(margin, width - margin, rule_y, width=2)
    return rule_y + size


def _inline_fields(
    page: _Page, fields: list[FormField], columns: int, size: int, margin: int, top: int
) -> tuple[int, int] | None:
    """`Label:` (bold) and value on a fill-in line, row-major over 1 or 2 columns; `(columns, bottom y)`."""
    width = page.image.size[0]
    bold, regular = font(size, bold=True), font(size)
    gap = 2 * size
    for cols in sorted({columns, 1}, reverse=True):
        col_w = (width - 2 * margin - gap * (cols - 1)) // cols
        per_col = [fields[c::cols] for c in range(cols)]
        offsets = [max(text_width(f"{f.label}:", bold) for f in col) + size // 2 for col in per_col if col]
        if all(
            off + text_width(f.value, regular) + size // 2 <= col_w
            for off, col in zip(offsets, per_col, strict=False)
            for f in col
        ):
            break
    else:
        return None
    pitch = round(size * 2.1)
    for i, fld in enumerate(fields):
        col, row = i % cols, i // cols
        x, y = margin + col * (col_w + gap), top + row * pitch
        page.text((x, y), f"{fld.label}:", bold)
        page.text((x + offsets[col], y), fld.value, regular)
        page.rule(x + offsets[col] - 3, x + col_w, y + _line_height(regular) + 1)
    rows = (len(fields) + cols - 1) // cols
    return cols, top + rows * pitch


def _boxed_fields(
    page: _Page, fields: list[FormField], columns: int, size: int, margin: int, top: int
) -> tuple[int, int] | None:
    """A grid of bordered cells, small grey label above the value; `(columns, bottom y)`."""
    width = page.image.size[0]
    regular, small = font(size), font(max(_MIN_FONT_PX, round(size * 0.72)))
    pad = max(3, round(size * 0.4))
    for cols in sorted({columns, 1}, reverse=True):
        cell_w = (width - 2 * margin) // cols
        if all(max(text_width(f.value, regular), text_width(f.label, small)) + 2 * pad <= cell_w for f in fields):
            break
    else:
        return None
    cell_h = pad + _line_height(small) + pad // 2 + _line_height(regular) + pad
    for i, fld in enumerate(fields):
        x, y = margin + (i % cols) * cell_w, top + (i // cols) * cell_h
        page.draw.rectangle([x, y, x + cell_w, y + cell_h], outline=page.faint, width=1)
        page.text((x + pad, y + pad), fld.label, small, page.grey)
        page.text((x + pad, y + pad + _line_height(small) + pad // 2), fld.value, regular)
    rows = (len(fields) + cols - 1) // cols
    return cols, top + rows * cell_h + 1


def _items_table(page: _Page, content: FormContent, size: int, margin: int, top: int, bottom: int) -> int | None:
    """Line items (description, qty, unit price, amount) between `top` and `bottom`; the y below the table,
    or None (nothing drawn) if it does not fit."""
    width = page.image.size[0]
    t = max(_MIN_FONT_PX, round(size * 0.85))
    head, body = font(t, bold=True), font(t)
    pitch = round(t * 1.8)
    if top + pitch * (len(content.items) + 1) + t > bottom:
        return None
    span = width - 2 * margin
    headers = ("Description", "Qty", "Unit price", "Amount")
    rights = [margin + round(span * r) for r in (0.58, 0.76, 1.0)]
    rows = [(i.description, str(i.quantity), i.unit_price, i.amount) for i in content.items]
    # Each right-aligned column must clear the one to its left, the description column the first number.
    for k, right in enumerate(rights, start=1):
        widest = max(text_width(r[k], body) for r in [*rows, headers])
        left_edge = margin + max(text_width(r[0], body) for r in [*rows, headers]) if k == 1 else rights[k - 2]
        if right - widest < left_edge + t:
            return None
    page.rule(margin, width - margin, top)
    for j, row in enumerate([headers, *rows]):
        y = top + pitch // 4 + j * pitch
        fnt = head if j == 0 else body
        page.text((margin, y), row[0], fnt)
        for k, right in enumerate(rights, start=1):
            page.text((right - text_width(row[k], fnt), y), row[k], fnt)
        if j == 0:
            page.rule(margin, width - margin, y + pitch - pitch // 4)
    page.rule(margin, width - margin, top + pitch * (len(rows) + 1))
    return top + pitch * (len(rows) + 1)


def _notes(page: _Page, notes: list[str], size: int, margin: int, top: int, bottom: int) -> None:
    """A `Notes` heading and boilerplate lines between `top` and `bottom`, word-wrapped; skipped if it does not fit."""
    width = page.image.size[0]
    head, body = font(max(_MIN_FONT_PX, round(size * 0.8)), bold=True), font(max(_MIN_FONT_PX, round(size * 0.8)))
    lines: list[str] = []
    for note in notes:
        line = ""
        for word in note.split():
            candidate = f"{line} {word}".strip()
            if line and text_width(candidate, body) > width - 2 * margin:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    pitch = round(_line_height(body) * 1.3)
    if top + pitch * (len(lines) + 1) > bottom:
        return
    page.text((margin, top), "Notes", head)
    for i, line in enumerate(lines, start=1):
        page.text((margin, top + i * pitch), line, body, page.grey)


def _signature(page: _Page, size: int, margin: int, y: int) -> None:
    """`Signature:` with a blank line to sign on, at the foot of forms that need one."""
    fnt = font(size)
    page.text((margin, y), "Signature:", fnt)
    x = margin + text_width("Signature:", fnt) + size // 2
    page.rule(x, x + 10 * size, y + _line_height(fnt))
