//! PDF rendering, in process: the laid-out blocks are set in DejaVu Sans (committed under
//! `collector/assets/fonts`, Bitstream Vera licence), word-wrapped with the font's advance
//! widths, and written with `pdf-writer`. Each font is embedded as a subset (`subsetter`) in
//! a Type 0 / CIDFontType2 font with Identity-H encoding and a ToUnicode map, so every glyph
//! on the page maps back to its character and `pdftotext` extracts the text. Streams are
//! Flate-compressed (`miniz_oxide`). The output is deterministic: the same report gives the
//! same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::Report;
use super::document::{Block, Cell, Tone, layout};

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 48.0;
const TOP: f32 = PAGE_H - MARGIN;
const BOTTOM: f32 = 64.0;
const WIDTH: f32 = PAGE_W - 2.0 * MARGIN;
const TABLE_SIZE: f32 = 7.0;
const TABLE_LH: f32 = TABLE_SIZE * 1.3;
const TABLE_PAD: f32 = 2.5;

/// Errors of PDF rendering: only a font that does not load or subset, which is a build defect.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the embedded font {0} does not parse: {1}")]
    Font(&'static str, String),
    #[error("subsetting the embedded font {0} failed: {1}")]
    Subset(&'static str, String),
}

struct Font {
    name: &'static str,
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    units: f32,
    /// Advance widths (1000 units per em) of the ASCII characters, looked up once.
    ascii: [f32; 128],
}

impl Font {
    fn load(name: &'static str, data: &'static [u8]) -> Result<Font, PdfError> {
        let face = ttf_parser::Face::parse(data, 0).map_err(|e| PdfError::Font(name, e.to_string()))?;
        let mut font = Font {
            name,
            data,
            units: f32::from(face.units_per_em()),
            face,
            ascii: [0.0; 128],
        };
        for b in 0u8..128 {
            font.ascii[usize::from(b)] = font.advance(font.glyph(char::from(b)));
        }
        Ok(font)
    }

    /// The glyph of a character, `?` for one the font lacks.
    fn glyph(&self, c: char) -> u16 {
        self.face
            .glyph_index(c)
            .or_else(|| self.face.glyph_index('?'))
            .map(|g| g.0)
            .unwrap_or(0)
    }

    /// The character drawn for `c` (the one the font has).
    fn shown(&self, c: char) -> char {
        if self.face.glyph_index(c).is_some() { c } else { '?' }
    }

    fn advance(&self, gid: u16) -> f32 {
        f32::from(self.face.glyph_hor_advance(ttf_parser::GlyphId(gid)).unwrap_or(0)) / self.units * 1000.0
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| match self.ascii.get(c as usize) {
                Some(w) => *w,
                None => self.advance(self.glyph(c)),
            })
            .sum::<f32>()
            * size
            / 1000.0
    }
}

struct Fonts {
    regular: Font,
    bold: Font,
}

fn fonts() -> Result<&'static Fonts, PdfError> {
    static FONTS: OnceLock<Result<Fonts, String>> = OnceLock::new();
    let loaded = FONTS.get_or_init(|| {
        Ok(Fonts {
            regular: Font::load("DejaVuSans.ttf", REGULAR).map_err(|e| e.to_string())?,
            bold: Font::load("DejaVuSans-Bold.ttf", BOLD).map_err(|e| e.to_string())?,
        })
    });
    loaded.as_ref().map_err(|e| PdfError::Font("DejaVu Sans", e.clone()))
}

#[derive(Clone, Copy, PartialEq)]
enum Face {
    Regular,
    Bold,
}

enum Op {
    Text {
        face: Face,
        size: f32,
        x: f32,
        y: f32,
        text: String,
        rgb: (f32, f32, f32),
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        gray: f32,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
    },
}

fn rgb(tone: Tone) -> (f32, f32, f32) {
    match tone {
        Tone::Plain => (0.1, 0.1, 0.1),
        Tone::Good => (0.05, 0.45, 0.15),
        Tone::Bad => (0.75, 0.08, 0.08),
        Tone::Warn => (0.6, 0.38, 0.0),
    }
}

/// Places text on pages.
struct Layout<'f> {
    fonts: &'f Fonts,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl<'f> Layout<'f> {
    fn font(&self, face: Face) -> &'f Font {
        match face {
            Face::Regular => &self.fonts.regular,
            Face::Bold => &self.fonts.bold,
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    fn ensure(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.new_page();
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    /// Word-wraps `text` to `width` points (widths summed once per word, not per line).
    fn wrap(&self, text: &str, face: Face, size: f32, width: f32) -> Vec<String> {
        let font = self.font(face);
        let space = font.width(" ", size);
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            let mut line_w = 0.0;
            for word in paragraph.split_whitespace() {
                let word_w = font.width(word, size);
                if line.is_empty() && word_w <= width {
                    line.push_str(word);
                    line_w = word_w;
                    continue;
                }
                if !line.is_empty() && line_w + space + word_w <= width {
                    line.push(' ');
                    line.push_str(word);
                    line_w += space + word_w;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line_w = 0.0;
                }
                if word_w <= width {
                    line.push_str(word);
                    line_w = word_w;
                    continue;
                }
                // A word wider than the column is broken where it must be.
                for c in word.chars() {
                    let cw = font.width(c.encode_utf8(&mut [0; 4]), size);
                    if line_w + cw > width && !line.is_empty() {
                        lines.push(std::mem::take(&mut line));
                        line_w = 0.0;
                    }
                    line.push(c);
                    line_w += cw;
                }
            }
            lines.push(line);
        }
        lines
    }

    fn text_block(&mut self, text: &str, face: Face, size: f32, tone: Tone, gap: f32) {
        let (x, width) = (MARGIN, WIDTH);
        let lh = size * 1.35;
        for line in self.wrap(text, face, size, width) {
            self.ensure(lh);
            self.y -= lh;
            let y = self.y + size * 0.25;
            self.push(Op::Text {
                face,
                size,
                x,
                y,
                text: line,
                rgb: rgb(tone),
            });
        }
        self.y -= gap;
    }

    /// Wraps a table row's cells; returns the lines per cell and the row's height.
    fn measure_row(&self, cells: &[Cell], cols: &[f32], face: Face) -> (Vec<Vec<String>>, f32) {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(cols)
            .map(|(c, w)| self.wrap(&c.text, face, TABLE_SIZE, w - 2.0 * TABLE_PAD))
            .collect();
        let n = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
        (wrapped, n as f32 * TABLE_LH + 2.0 * TABLE_PAD)
    }

    fn draw_row(&mut self, cells: &[Cell], cols: &[f32], face: Face, shade: Option<f32>) {
        let (wrapped, height) = self.measure_row(cells, cols, face);
        let top = self.y;
        if let Some(gray) = shade {
            self.push(Op::Rect {
                x: MARGIN,
                y: top - height,
                w: WIDTH,
                h: height,
                gray,
            });
        }
        let mut x = MARGIN;
        for ((lines, w), cell) in wrapped.iter().zip(cols).zip(cells) {
            for (i, line) in lines.iter().enumerate() {
                self.push(Op::Text {
                    face,
                    size: TABLE_SIZE,
                    x: x + TABLE_PAD,
                    y: top - TABLE_PAD - (i as f32 + 1.0) * TABLE_LH + TABLE_SIZE * 0.3,
                    text: line.clone(),
                    rgb: rgb(cell.tone),
                });
            }
            x += w;
        }
        self.y = top - height;
        self.push(Op::Line {
            x1: MARGIN,
            y1: self.y,
            x2: MARGIN + WIDTH,
            y2: self.y,
        });
    }

    fn table(&mut self, headers: &[String], widths: &[f32], rows: &[Vec<Cell>]) {
        let total: f32 = widths.iter().sum();
        let cols: Vec<f32> = widths.iter().map(|w| w / total * WIDTH).collect();
        let header: Vec<Cell> = headers
            .iter()
            .map(|h| Cell {
                text: h.clone(),
                tone: Tone::Plain,
            })
            .collect();
        let (_, header_h) = self.measure_row(&header, &cols, Face::Bold);
        let first = rows
            .first()
            .map(|r| self.measure_row(r, &cols, Face::Regular).1)
            .unwrap_or(0.0);
        self.ensure(header_h + first);
        self.draw_row(&header, &cols, Face::Bold, Some(0.9));
        for row in rows {
            let (_, h) = self.measure_row(row, &cols, Face::Regular);
            if self.y - h < BOTTOM {
                self.new_page();
                self.draw_row(&header, &cols, Face::Bold, Some(0.9));
            }
            self.draw_row(row, &cols, Face::Regular, None);
        }
        self.y -= 8.0;
    }

    fn block(&mut self, block: &Block) {
        match block {
            Block::Title(text) => {
                self.y -= 40.0;
                self.text_block(text, Face::Bold, 20.0, Tone::Plain, 18.0);
            }
            Block::Heading { level, text, .. } => {
                let (size, before, after) = match level {
                    1 => (15.0, 14.0, 6.0),
                    2 => (11.5, 12.0, 3.0),
                    _ => (9.5, 6.0, 2.0),
                };
                self.ensure(before + size * 4.0);
                if self.y < TOP {
                    self.y -= before;
                }
                self.text_block(text, Face::Bold, size, Tone::Plain, after);
            }
            Block::Para { text, tone } => self.text_block(text, Face::Regular, 9.0, *tone, 5.0),
            Block::Note(text) => self.text_block(text, Face::Regular, 7.5, Tone::Plain, 4.0),
            Block::KeyValues(pairs) => {
                let key_w = 120.0;
                for (k, v) in pairs {
                    let lines = self.wrap(&v.text, Face::Regular, 9.0, WIDTH - key_w);
                    let lh = 9.0 * 1.4;
                    self.ensure(lh * lines.len() as f32);
                    let top = self.y;
                    self.push(Op::Text {
                        face: Face::Bold,
                        size: 9.0,
                        x: MARGIN,
                        y: top - lh + 2.5,
                        text: k.clone(),
                        rgb: rgb(Tone::Plain),
                    });
                    for (i, line) in lines.into_iter().enumerate() {
                        self.push(Op::Text {
                            face: Face::Regular,
                            size: 9.0,
                            x: MARGIN + key_w,
                            y: top - (i as f32 + 1.0) * lh + 2.5,
                            text: line,
                            rgb: rgb(v.tone),
                        });
                        self.y -= lh;
                    }
                }
                self.y -= 6.0;
            }
            Block::Table { headers, widths, rows } => self.table(headers, widths, rows),
            Block::PageBreak => {
                if self.y < TOP {
                    self.new_page();
                }
            }
        }
    }
}

/// One embedded font: its subset and the remapped glyph of each character used.
struct Embedded {
    glyphs: BTreeMap<char, u16>,
    subset: Vec<u8>,
    widths: Vec<f32>,
}

fn embed(font: &Font, used: &BTreeSet<char>) -> Result<Embedded, PdfError> {
    let mut remapper = subsetter::GlyphRemapper::new();
    let mut glyphs = BTreeMap::new();
    let mut old_of_new = vec![0u16];
    for c in used {
        let old = font.glyph(*c);
        let new = remapper.remap(old);
        if usize::from(new) >= old_of_new.len() {
            old_of_new.resize(usize::from(new) + 1, 0);
        }
        old_of_new[usize::from(new)] = old;
        glyphs.insert(*c, new);
    }
    let subset = subsetter::subset(font.data, 0, &remapper).map_err(|e| PdfError::Subset(font.name, e.to_string()))?;
    let widths = old_of_new.iter().map(|g| font.advance(*g)).collect();
    Ok(Embedded { glyphs, subset, widths })
}

fn compress(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// Renders a report as PDF.
pub fn render(report: &Report) -> Result<Vec<u8>, PdfError> {
    let fonts = fonts()?;
    let mut lay = Layout {
        fonts,
        pages: Vec::new(),
        y: TOP,
    };
    lay.new_page();
    for block in layout(report) {
        lay.block(&block);
    }
    let mut pages = lay.pages;
    pages.retain(|p| !p.is_empty());
    let total = pages.len();
    let issue = &report.issue;
    let content = &report.content;
    for (i, page) in pages.iter_mut().enumerate() {
        page.push(Op::Line {
            x1: MARGIN,
            y1: 44.0,
            x2: MARGIN + WIDTH,
            y2: 44.0,
        });
        page.push(Op::Text {
            face: Face::Regular,
            size: 7.0,
            x: MARGIN,
            y: 34.0,
            text: format!(
                "{} · compliance report {} to {} · page {} of {total}",
                content.practice,
                content.period.from,
                content.period.to,
                i + 1
            ),
            rgb: rgb(Tone::Plain),
        });
        page.push(Op::Text {
            face: Face::Regular,
            size: 6.5,
            x: MARGIN,
            y: 25.0,
            text: format!("Report {} · content SHA-256 {}", issue.report_id, issue.content_sha256),
            rgb: (0.35, 0.35, 0.35),
        });
    }

    // Which characters each font draws.
    let mut used = [BTreeSet::new(), BTreeSet::new()];
    for op in pages.iter().flatten() {
        if let Op::Text { face, text, .. } = op {
            let font = lay_font(fonts, *face);
            used[*face as usize].extend(text.chars().map(|c| font.shown(c)));
        }
    }
    let embedded = [embed(&fonts.regular, &used[0])?, embed(&fonts.bold, &used[1])?];

    let mut pdf = Pdf::new();
    let mut next = 1;
    let mut alloc = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    let catalog = alloc();
    let tree = alloc();
    let info = alloc();
    let font_refs: Vec<[Ref; 5]> = (0..2).map(|_| [alloc(), alloc(), alloc(), alloc(), alloc()]).collect();
    let page_refs: Vec<(Ref, Ref)> = pages.iter().map(|_| (alloc(), alloc())).collect();

    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_refs.iter().map(|(p, _)| *p))
        .count(i32::try_from(total).unwrap_or(i32::MAX));
    let mut doc = pdf.document_info(info);
    doc.title(TextStr(&format!(
        "HIPAA Security Rule compliance report: {}, {} to {}",
        content.practice, content.period.from, content.period.to
    )));
    doc.subject(TextStr(&format!(
        "rounds-report-id {} content-sha256 {}",
        issue.report_id, issue.content_sha256
    )));
    doc.producer(TextStr(&format!("rounds-collector {}", issue.collector_version)));
    doc.finish();

    let names = [Name(b"F1"), Name(b"F2")];
    for (i, (font, emb)) in [&fonts.regular, &fonts.bold].into_iter().zip(&embedded).enumerate() {
        let [type0, cid, descriptor, cmap_ref, file] = font_refs[i];
        let tag = if i == 0 { "RNDSAA" } else { "RNDSAB" };
        let base = format!(
            "{tag}+{}",
            font.face
                .names()
                .into_iter()
                .find(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME)
                .and_then(|n| n.to_string())
                .unwrap_or_else(|| font.name.trim_end_matches(".ttf").to_string())
        );
        let base_name = Name(base.as_bytes());
        let system = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };
        pdf.type0_font(type0)
            .base_font(base_name)
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid)
            .to_unicode(cmap_ref);
        let mut c = pdf.cid_font(cid);
        c.subtype(CidFontType::Type2)
            .base_font(base_name)
            .system_info(system)
            .font_descriptor(descriptor)
            .default_width(0.0)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        c.widths().consecutive(0, emb.widths.iter().copied());
        c.finish();
        let scale = 1000.0 / font.units;
        let bbox = font.face.global_bounding_box();
        let mut flags = FontFlags::NON_SYMBOLIC;
        if i == 1 {
            flags |= FontFlags::FORCE_BOLD;
        }
        pdf.font_descriptor(descriptor)
            .name(base_name)
            .flags(flags)
            .bbox(Rect::new(
                f32::from(bbox.x_min) * scale,
                f32::from(bbox.y_min) * scale,
                f32::from(bbox.x_max) * scale,
                f32::from(bbox.y_max) * scale,
            ))
            .italic_angle(0.0)
            .ascent(f32::from(font.face.ascender()) * scale)
            .descent(f32::from(font.face.descender()) * scale)
            .cap_height(f32::from(font.face.capital_height().unwrap_or(font.face.ascender())) * scale)
            .stem_v(if i == 1 { 140.0 } else { 80.0 })
            .font_file2(file);
        let mut cmap = UnicodeCmap::new(Name(b"Custom"), system);
        for (ch, gid) in &emb.glyphs {
            cmap.pair(*gid, *ch);
        }
        let cmap = cmap.finish();
        pdf.cmap(cmap_ref, &cmap);
        let data = compress(&emb.subset);
        pdf.stream(file, &data).filter(Filter::FlateDecode);
    }

    for (page, (page_ref, content_ref)) in pages.iter().zip(&page_refs) {
        let mut c = Content::new();
        for op in page {
            match op {
                Op::Rect { x, y, w, h, gray } => {
                    c.set_fill_gray(*gray).rect(*x, *y, *w, *h).fill_nonzero();
                }
                Op::Line { x1, y1, x2, y2 } => {
                    c.set_stroke_gray(0.75)
                        .set_line_width(0.4)
                        .move_to(*x1, *y1)
                        .line_to(*x2, *y2)
                        .stroke();
                }
                Op::Text {
                    face,
                    size,
                    x,
                    y,
                    text,
                    rgb,
                } => {
                    let emb = &embedded[*face as usize];
                    let font = lay_font(fonts, *face);
                    let mut bytes = Vec::with_capacity(text.len() * 2);
                    for ch in text.chars() {
                        let gid = emb.glyphs.get(&font.shown(ch)).copied().unwrap_or(0);
                        bytes.extend_from_slice(&gid.to_be_bytes());
                    }
                    c.begin_text()
                        .set_font(names[*face as usize], *size)
                        .set_fill_rgb(rgb.0, rgb.1, rgb.2)
                        .set_text_matrix([1.0, 0.0, 0.0, 1.0, *x, *y])
                        .show(Str(&bytes))
                        .end_text();
                }
            }
        }
        let data = compress(&c.finish());
        pdf.stream(*content_ref, &data).filter(Filter::FlateDecode);
        let mut p = pdf.page(*page_ref);
        p.parent(tree)
            .media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .contents(*content_ref);
        let mut res = p.resources();
        let mut f = res.fonts();
        f.pair(names[0], font_refs[0][0]);
        f.pair(names[1], font_refs[1][0]);
        f.finish();
        res.finish();
        p.finish();
    }
    Ok(pdf.finish())
}

fn lay_font(fonts: &Fonts, face: Face) -> &Font {
    match face {
        Face::Regular => &fonts.regular,
        Face::Bold => &fonts.bold,
    }
}
