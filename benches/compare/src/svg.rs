//! Hand-written SVG charts: grouped bars of latency percentiles, and log-log lines.

use std::fmt::Write;

const PALETTE: [&str; 6] = [
    "#1f77b4", "#aec7e8", "#d62728", "#2ca02c", "#98df8a", "#9467bd",
];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A decade's label without trailing zeros: "100.00 ms" -> "100 ms", "0.10 us" -> "0.1 us".
fn tidy(label: String) -> String {
    let (num, unit) = label.split_once(' ').unwrap_or((&label, ""));
    let num = if num.contains('.') {
        num.trim_end_matches('0').trim_end_matches('.')
    } else {
        num
    };
    if unit.is_empty() {
        num.to_owned()
    } else {
        format!("{num} {unit}")
    }
}

/// Decades covering [lo, hi] (both > 0).
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let a = lo.max(1e-12).log10().floor();
    let mut b = hi.max(lo).log10().ceil();
    if b <= a {
        b = a + 1.0;
    }
    (a, b)
}

fn header(out: &mut String, w: f64, h: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"#,
        w / 2.0,
        esc(title)
    );
}

fn legend(out: &mut String, x: f64, y: f64, names: &[(usize, String)]) {
    for (row, (ci, name)) in names.iter().enumerate() {
        let yy = y + row as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            yy - 10.0,
            color(*ci),
            x + 18.0,
            yy,
            esc(name)
        );
    }
}

/// One bar series: name, palette index, and per group (p50, p90, p99) or None.
pub struct BarSeries {
    pub name: String,
    pub color: usize,
    pub values: Vec<Option<(f64, f64, f64)>>,
}

/// Grouped bars (median) with a whisker from p90 (dot) to p99 (tick), on a log scale.
pub fn bars(
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[BarSeries],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().flat_map(|&(a, b, c)| [a, b, c]))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let (d0, d1) = if all.is_empty() {
        (0.0, 1.0)
    } else {
        decades(lo, hi)
    };
    let bar_w = 14.0;
    let group_w = bar_w * series.len() as f64 + 24.0;
    let (left, top, plot_h) = (80.0, 40.0, 300.0);
    let plot_w = (group_w * groups.len() as f64).max(300.0);
    let legend_w = 260.0;
    let w = left + plot_w + 20.0 + legend_w;
    let h = top + plot_h + 60.0;
    let mut out = String::new();
    header(&mut out, w, h, title);
    let y_of = |v: f64| top + plot_h - (v.max(10f64.powf(d0)).log10() - d0) / (d1 - d0) * plot_h;
    for d in (d0 as i32)..=(d1 as i32) {
        let v = 10f64.powi(d);
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            esc(&tidy(fmt(v)))
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        esc(y_label)
    );
    for (gi, g) in groups.iter().enumerate() {
        let gx = left + gi as f64 * group_w + 12.0;
        for (si, s) in series.iter().enumerate() {
            let Some((p50, p90, p99)) = s.values.get(gi).copied().flatten() else {
                continue;
            };
            let x = gx + si as f64 * bar_w;
            let y = y_of(p50);
            let _ = writeln!(
                out,
                r#"<rect x="{x}" y="{y}" width="{}" height="{}" fill="{}"><title>{}: median {}, p90 {}, p99 {}</title></rect>"#,
                bar_w - 2.0,
                (top + plot_h - y).max(0.5),
                color(s.color),
                esc(&s.name),
                esc(&fmt(p50)),
                esc(&fmt(p90)),
                esc(&fmt(p99))
            );
            let cx = x + (bar_w - 2.0) / 2.0;
            let _ = writeln!(
                out,
                r##"<line x1="{cx}" y1="{}" x2="{cx}" y2="{}" stroke="#333"/><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#333"/><circle cx="{cx}" cy="{}" r="2" fill="#333"/>"##,
                y_of(p90),
                y_of(p99),
                cx - 3.0,
                y_of(p99),
                cx + 3.0,
                y_of(p99),
                y_of(p90)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            gx + bar_w * series.len() as f64 / 2.0,
            top + plot_h + 18.0,
            esc(g)
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    let names: Vec<(usize, String)> = series.iter().map(|s| (s.color, s.name.clone())).collect();
    legend(&mut out, left + plot_w + 20.0, top + 10.0, &names);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="11">bar: median; dot: p90; tick: p99</text>"#,
        left + plot_w + 20.0,
        top + 10.0 + names.len() as f64 * 18.0 + 10.0
    );
    out.push_str("</svg>\n");
    out
}

pub struct LineSeries {
    pub name: String,
    pub color: usize,
    pub points: Vec<(f64, f64)>,
}

/// Lines on log-log axes.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[LineSeries],
    fx: &dyn Fn(f64) -> String,
    fy: &dyn Fn(f64) -> String,
) -> String {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|&(x, y)| x > 0.0 && y > 0.0)
        .collect();
    let min = |sel: fn(&(f64, f64)) -> f64| pts.iter().map(sel).fold(f64::INFINITY, f64::min);
    let max = |sel: fn(&(f64, f64)) -> f64| pts.iter().map(sel).fold(0.0, f64::max);
    let (x0, x1) = if pts.is_empty() {
        (0.0, 1.0)
    } else {
        decades(min(|p| p.0), max(|p| p.0))
    };
    let (y0, y1) = if pts.is_empty() {
        (0.0, 1.0)
    } else {
        decades(min(|p| p.1), max(|p| p.1))
    };
    let (left, top, plot_w, plot_h) = (80.0, 40.0, 460.0, 300.0);
    let w = left + plot_w + 20.0 + 240.0;
    let h = top + plot_h + 60.0;
    let mut out = String::new();
    header(&mut out, w, h, title);
    let xs = |x: f64| left + (x.log10() - x0) / (x1 - x0) * plot_w;
    let ys = |y: f64| top + plot_h - (y.log10() - y0) / (y1 - y0) * plot_h;
    for d in (x0 as i32)..=(x1 as i32) {
        let x = xs(10f64.powi(d));
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
            top + plot_h,
            top + plot_h + 18.0,
            esc(&tidy(fx(10f64.powi(d))))
        );
    }
    for d in (y0 as i32)..=(y1 as i32) {
        let y = ys(10f64.powi(d));
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            esc(&tidy(fy(10f64.powi(d))))
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 40.0,
        esc(x_label),
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        esc(y_label)
    );
    for s in series {
        let shown: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| x > 0.0 && y > 0.0)
            .collect();
        let p: Vec<String> = shown
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", xs(x), ys(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            p.join(" "),
            color(s.color)
        );
        for &(x, y) in &shown {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{}: {} at {}</title></circle>"#,
                xs(x),
                ys(y),
                color(s.color),
                esc(&s.name),
                esc(&fy(y)),
                esc(&fx(x))
            );
        }
    }
    let names: Vec<(usize, String)> = series.iter().map(|s| (s.color, s.name.clone())).collect();
    legend(&mut out, left + plot_w + 20.0, top + 10.0, &names);
    out.push_str("</svg>\n");
    out
}
