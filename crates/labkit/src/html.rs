//! One self-contained `index.html` for a whole run (`lab run … --out DIR`): every lab's
//! sentence, findings, tables, charts (inline SVG) and notes, readable offline from disk —
//! no server, no scripts, no external fonts or stylesheets.

use std::fmt::Write as _;

use crate::report::Report;

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:21px;margin:40px 0 6px;border-top:2px solid #d8dee8;padding-top:18px}
h3{font-size:16px;margin:22px 0 6px}
.env,.meta{color:#5b6475;font-size:13px}
blockquote{margin:12px 0;padding:10px 14px;background:#eef4ff;border-left:4px solid #3d6fd6;font-size:16px}
table{border-collapse:collapse;margin:8px 0;font-size:13.5px;background:#fff}
th,td{border:1px solid #d8dee8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
code{font-size:12.5px;color:#5b6475}
nav ul{columns:2;padding-left:18px}
.chart{margin:10px 0;max-width:100%}.chart svg{max-width:100%;height:auto;border:1px solid #d8dee8;background:#fff}
.note{color:#3b4352;font-size:13.5px}.skip{color:#9a5b00}
";

/// Escape text for HTML element content and attribute values.
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

/// The page for `reports`.
pub fn index(reports: &[Report]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Backend Labs — reports</title><style>{STYLE}</style></head><body><main>\n\
         <h1>Backend Labs — reports</h1>\n"
    );
    if let Some(first) = reports.first() {
        let _ = writeln!(
            h,
            "<p class=\"env\">{}</p>",
            escape(&first.environment.one_line())
        );
    }
    h.push_str("<nav><ul>\n");
    for r in reports {
        let _ = writeln!(
            h,
            "<li><a href=\"#{id}\">{id}</a> — {}</li>",
            escape(&r.title),
            id = escape(&r.lab)
        );
    }
    h.push_str("</ul></nav>\n");
    for r in reports {
        section(&mut h, r);
    }
    h.push_str("</main></body></html>\n");
    h
}

fn section(h: &mut String, r: &Report) {
    let _ = writeln!(
        h,
        "<section id=\"{}\"><h2>{} — {}</h2>",
        escape(&r.lab),
        escape(&r.lab),
        escape(&r.title)
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\">scale {} · seed {} · {:.1} s · started {}</p><p class=\"env\">{}</p>",
        r.scale,
        r.seed,
        r.duration_s,
        escape(&r.started_at),
        escape(&r.environment.one_line())
    );
    if !r.sentence.is_empty() {
        let _ = writeln!(h, "<blockquote>{}</blockquote>", escape(&r.sentence));
    }
    h.push_str("<table class=\"findings\"><tr><th>finding</th><th>value</th><th>key</th></tr>\n");
    for f in &r.findings {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>",
            escape(&f.label),
            escape(&f.value_with_samples()),
            escape(&f.key)
        );
    }
    h.push_str("</table>\n");
    for t in &r.tables {
        let _ = writeln!(h, "<h3>{}</h3><table><tr>", escape(&t.title));
        for c in &t.columns {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr>\n");
        for row in &t.rows {
            h.push_str("<tr>");
            for cell in row {
                let _ = write!(h, "<td>{}</td>", escape(cell));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
    for c in &r.charts {
        match crate::chart::render_svg(c) {
            Ok(svg) => {
                // The SVG is our own output (plotters): inline it as is, minus its XML prolog.
                let svg = svg.trim_start_matches(|ch| ch != '<');
                let svg = match svg.strip_prefix("<?xml") {
                    Some(rest) => rest.split_once("?>").map_or(rest, |(_, s)| s),
                    None => svg,
                };
                let _ = writeln!(
                    h,
                    "<figure class=\"chart\" id=\"{}-{}\">{}</figure>",
                    escape(&r.lab),
                    escape(&c.id),
                    svg.trim()
                );
            }
            Err(e) => {
                let _ = writeln!(
                    h,
                    "<p class=\"note\">chart {} not drawn: {}</p>",
                    escape(&c.id),
                    escape(&e)
                );
            }
        }
    }
    if !r.phases.is_empty() {
        h.push_str("<h3>Load phases</h3><ul class=\"note\">\n");
        for p in &r.phases {
            let _ = writeln!(h, "<li>{}</li>", escape(&p.describe()));
        }
        h.push_str("</ul>\n");
    }
    for s in &r.skipped {
        let _ = writeln!(
            h,
            "<p class=\"skip\">Skipped — {}: {}</p>",
            escape(&s.scenario),
            escape(&s.reason)
        );
    }
    for n in r.notes.iter().filter(|n| !n.starts_with("Skipped — ")) {
        let _ = writeln!(h, "<p class=\"note\">Note: {}</p>", escape(n));
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
