//! Charts as inline SVG, rendered on the server: status bars (one cell per hour or day) and a
//! line chart over time. Nothing is fetched and no script runs; every text inside a chart
//! (titles, labels) is escaped here, because templates insert the SVG unescaped.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::domains::Level;

/// Escapes text for SVG/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One cell of a status bar: its state and a tooltip.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub level: Level,
    pub title: String,
}

/// Fill of a state; the pattern of a failing cell is hatched so it reads without colour.
fn fill(level: Level) -> &'static str {
    match level {
        Level::Fail => "url(#hatch)",
        Level::Warn => "#d4a72c",
        Level::Ok => "#1a7f37",
        Level::NoData => "#d1d9e0",
    }
}

/// A row of cells, oldest left, with a label for screen readers.
pub fn status_bar(cells: &[Cell], label: &str) -> String {
    let n = cells.len().max(1);
    let (w, h, gap) = (600.0_f64, 28.0_f64, 2.0_f64);
    let cw = (w - gap * (n as f64 - 1.0)) / n as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart bars" viewBox="0 0 {w} {h}" preserveAspectRatio="none" role="img" aria-label="{}"><defs><pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="4" height="4" fill="#b42318"/><rect width="1.5" height="4" fill="#ffebe9"/></pattern></defs>"##,
        escape(label)
    );
    for (i, c) in cells.iter().enumerate() {
        let x = i as f64 * (cw + gap);
        let _ = write!(
            svg,
            r#"<rect x="{x:.2}" y="0" width="{cw:.2}" height="{h}" rx="2" fill="{}" data-level="{}"><title>{}</title></rect>"#,
            fill(c.level),
            c.level.key(),
            escape(&c.title)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One line of a chart: its name and its points in time order.
pub type Series = (String, Vec<(DateTime<Utc>, f64)>);

/// A line chart of `series` (each a name and its points) over `from..to`, y from 0 to the
/// largest value, with the axis labelled in `unit`.
pub fn line_chart(series: &[Series], from: DateTime<Utc>, to: DateTime<Utc>, unit: &str) -> String {
    const COLOURS: [&str; 4] = ["#0b3d5c", "#8250df", "#bc4c00", "#1a7f37"];
    const DASHES: [&str; 4] = ["", "6 3", "2 2", "8 2 2 2"];
    let (w, h, left, bottom, top) = (600.0_f64, 180.0_f64, 48.0_f64, 22.0_f64, 8.0_f64);
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max);
    let ymax = if max <= 0.0 { 1.0 } else { nice_ceiling(max) };
    let span = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| left + (w - left - 4.0) * ((t - from).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v / ymax).clamp(0.0, 1.0));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart line" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        escape(&format!("chart in {unit}, up to {ymax}"))
    );
    for frac in [0.0, 0.5, 1.0] {
        let v = ymax * frac;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{w}" y1="{y:.1}" y2="{y:.1}" stroke="#d1d9e0"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end" fill="#59636e">{} {}</text>"##,
            fmt_num(v),
            escape(unit),
            y = y(v),
            tx = left - 4.0,
            ty = y(v) + 4.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{left}" y="{ty}" font-size="11" fill="#59636e">{}</text><text x="{w}" y="{ty}" font-size="11" text-anchor="end" fill="#59636e">{}</text>"##,
        from.format("%m-%d %H:%M UTC"),
        to.format("%m-%d %H:%M UTC"),
        ty = h - 6.0
    );
    for (i, (name, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}" points="{}"><title>{}</title></polyline>"#,
            COLOURS[i % COLOURS.len()],
            DASHES[i % DASHES.len()],
            path.join(" "),
            escape(name)
        );
        for (t, v) in points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"><title>{}: {} {} at {}</title></circle>"#,
                x(*t),
                y(*v),
                COLOURS[i % COLOURS.len()],
                escape(name),
                fmt_num(*v),
                escape(unit),
                t.format("%Y-%m-%d %H:%M UTC")
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest of 1, 2, 5 times a power of ten at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_charts_is_escaped() {
        let svg = status_bar(
            &[Cell {
                level: Level::Fail,
                title: "<script>alert(1)</script>".into(),
            }],
            "a\"b",
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("aria-label=\"a&quot;b\""));
        let t = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().to_utc();
        let line = line_chart(
            &[("<b>x</b>".into(), vec![(t, 5.0)])],
            t - chrono::Duration::hours(1),
            t,
            "ms",
        );
        assert!(!line.contains("<b>"));
        assert!(line.contains("&lt;b&gt;x&lt;/b&gt;: 5 ms"));
    }

    #[test]
    fn bars_have_one_cell_each_and_axes_round_up() {
        let cells = vec![
            Cell {
                level: Level::Ok,
                title: "a".into()
            };
            24
        ];
        assert_eq!(status_bar(&cells, "x").matches("<rect x=").count(), 24);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(nice_ceiling(42.0), 50.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
    }
}
