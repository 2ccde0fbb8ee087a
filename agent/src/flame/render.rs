//! Rendering with inferno: folded lines in, an interactive SVG out (inferno's
//! own search, zoom and reset scripts). Colours come from a hash of each frame
//! name, so a function keeps its colour from one graph to the next.

use inferno::flamegraph::color::BasicPalette;
use inferno::flamegraph::{self, Direction, Options, Palette};

/// How the graph is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Roots at the bottom, merged stacks sorted by name.
    Flame,
    /// Roots at the top.
    Icicle,
    /// Time left to right, stacks not merged across time (inferno's flame chart).
    Chart,
}

impl Mode {
    /// The `mode=` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "flame" => Some(Self::Flame),
            "icicle" => Some(Self::Icicle),
            "chart" => Some(Self::Chart),
            _ => None,
        }
    }
}

/// What the graph shows, for its title and palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Span self time in microseconds.
    Spans,
    /// CPU samples (or the unit of the chosen pprof sample type).
    Cpu,
}

/// Everything around the stacks.
#[derive(Debug, Clone)]
pub struct Look {
    /// Drawing mode.
    pub mode: Mode,
    /// The data's origin.
    pub source: Source,
    /// Top line.
    pub title: String,
    /// Second line (window, sampling rate).
    pub subtitle: String,
    /// The unit each count is in: `µs`, `samples`.
    pub count_name: String,
}

/// Renders folded `lines` as an SVG. Lines must be sorted by stack unless the
/// mode is [`Mode::Chart`], where their order is time; two-count lines make a
/// differential graph.
pub fn render_svg<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    look: &Look,
) -> std::io::Result<Vec<u8>> {
    let mut options = Options::default();
    options.title.clone_from(&look.title);
    options.subtitle = Some(look.subtitle.clone());
    options.count_name.clone_from(&look.count_name);
    options.hash = true;
    options.no_sort = true;
    options.colors = match look.source {
        Source::Spans => Palette::Basic(BasicPalette::Aqua),
        Source::Cpu => Palette::Basic(BasicPalette::Hot),
    };
    options.name_type = match look.source {
        Source::Spans => "Span:".to_owned(),
        Source::Cpu => "Function:".to_owned(),
    };
    match look.mode {
        Mode::Flame => {}
        Mode::Icicle => options.direction = Direction::Inverted,
        Mode::Chart => options.flame_chart = true,
    }
    let mut svg = Vec::with_capacity(256 * 1024);
    if look.mode == Mode::Chart {
        // inferno draws a chart's first line at the right end: feed it the
        // latest first so time runs left to right.
        let mut lines: Vec<&str> = lines.into_iter().collect();
        lines.reverse();
        flamegraph::from_lines(&mut options, lines, &mut svg)?;
    } else {
        flamegraph::from_lines(&mut options, lines, &mut svg)?;
    }
    Ok(svg)
}

/// The two-column folded text of a differential flame graph
/// (`stack before after`), sorted by stack, through inferno's differential
/// module, from two folded texts. `normalize` scales `before` to `after`'s
/// total.
pub fn differential(before: &str, after: &str, normalize: bool) -> std::io::Result<String> {
    let mut out = Vec::with_capacity(before.len() + after.len());
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize,
            strip_hex: false,
        },
        before.as_bytes(),
        after.as_bytes(),
        &mut out,
    )?;
    let text = String::from_utf8(out).map_err(std::io::Error::other)?;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    let mut sorted = lines.join("\n");
    sorted.push('\n');
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flame::folded::parse_folded;

    fn look(mode: Mode) -> Look {
        Look {
            mode,
            source: Source::Cpu,
            title: "CPU: shop".into(),
            subtitle: "last 15 minutes".into(),
            count_name: "samples".into(),
        }
    }

    #[test]
    fn svg_has_title_search_and_frames() {
        let stacks = parse_folded(b"main;work;hot 30\nmain;idle 10\n", 100).unwrap();
        let folded = stacks.to_folded();
        let svg =
            String::from_utf8(render_svg(folded.lines(), &look(Mode::Flame)).unwrap()).unwrap();
        assert!(svg.contains("CPU: shop"));
        assert!(svg.contains("last 15 minutes"));
        assert!(svg.contains("hot (30 samples, 75.00%)"), "{svg}");
        assert!(svg.contains("Search"), "inferno's search button");
        let icicle =
            String::from_utf8(render_svg(folded.lines(), &look(Mode::Icicle)).unwrap()).unwrap();
        assert_ne!(icicle, svg);
        // Colours are a function of the name: the same input renders the same bytes.
        assert_eq!(
            svg,
            String::from_utf8(render_svg(folded.lines(), &look(Mode::Flame)).unwrap()).unwrap()
        );
    }

    #[test]
    fn differential_columns() {
        let before = parse_folded(b"main;a 10\nmain;b 5\n", 100).unwrap();
        let after = parse_folded(b"main;a 4\nmain;c 7\n", 100).unwrap();
        let (before, after) = (before.to_folded(), after.to_folded());
        assert_eq!(
            differential(&before, &after, false).unwrap(),
            "main;a 10 4\nmain;b 5 0\nmain;c 0 7\n"
        );
        let normalized = differential(&before, &after, true).unwrap();
        assert!(normalized.contains("main;a 7 4"), "{normalized}");
    }
}

#[cfg(test)]
mod chart_tests {
    use super::*;

    /// The `x` of the first frame titled `name`.
    fn x_of(svg: &str, name: &str) -> f64 {
        let at = svg.find(&format!("<title>{name} (")).expect("frame");
        let rest = &svg[at..];
        let x = rest.split("x=\"").nth(1).expect("x attribute");
        x.split('%').next().unwrap().parse().expect("a number")
    }

    #[test]
    fn chart_keeps_time_order_left_to_right() {
        let look = Look {
            mode: Mode::Chart,
            source: Source::Spans,
            title: "t".into(),
            subtitle: "s".into(),
            count_name: "µs".into(),
        };
        // Reverse alphabetical on purpose: a sorting renderer would swap them.
        let lines = ["root;zeta 10", "root 5", "root;alpha 30"];
        let svg = String::from_utf8(render_svg(lines, &look).unwrap()).unwrap();
        assert!(x_of(&svg, "zeta") < x_of(&svg, "alpha"), "{svg}");
    }
}
