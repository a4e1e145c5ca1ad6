//! Small SVG charts drawn on the server, for HTML that needs no script: horizontal bars,
//! diverging bars (an index from −1 to +1), stacked columns with an optional line, and lines.
//!
//! Every chart is an inline `<svg role="img">` with a `<title>` and a `<desc>` (named by
//! `aria-labelledby`), so that screen readers announce it; the numbers it shows are also in a
//! table of the document. Sizes are in the `viewBox`'s units; the chart scales to its box.
//! Colours come from the caller (the report's palette has AA contrast on white).

use maud::{Markup, html};

/// The font of chart labels, in `viewBox` units.
const FONT: f64 = 9.0;

/// One bar or one point's value with its label.
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// The value as the reader should see it (already formatted).
    pub shown: String,
    pub color: &'static str,
}

/// One series of a column or line chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// One value per x label; `None` leaves a gap in a line.
    pub values: Vec<Option<f64>>,
}

/// The text identifying a chart to assistive technology.
#[derive(Clone, Copy, Debug)]
pub struct Caption<'a> {
    /// Unique in the document: the ids of the title and description derive from it.
    pub id: &'a str,
    pub title: &'a str,
    pub desc: &'a str,
}

fn frame(caption: Caption<'_>, width: f64, height: f64, body: Markup) -> Markup {
    let title_id = format!("{}-title", caption.id);
    let desc_id = format!("{}-desc", caption.id);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"
            viewBox=(format!("0 0 {width} {height}"))
            aria-labelledby=(format!("{title_id} {desc_id}")) {
            title id=(title_id) { (caption.title) }
            desc id=(desc_id) { (caption.desc) }
            (body)
        }
    }
}

/// Horizontal bars, one per row, the value written after each bar.
pub fn horizontal_bars(caption: Caption<'_>, bars: &[Bar]) -> Markup {
    let width = 300.0;
    let label_width = 112.0;
    let value_width = 40.0;
    let row = 16.0;
    let height = row * bars.len().max(1) as f64 + 4.0;
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let span = width - label_width - value_width;
    let body = html! {
        @for (i, bar) in bars.iter().enumerate() {
            @let y = 2.0 + row * i as f64;
            @let length = if max > 0.0 { span * bar.value.max(0.0) / max } else { 0.0 };
            text x=(label_width - 6.0) y=(y + row * 0.68) font-size=(FONT) text-anchor="end" fill="#1a1a1a" {
                (truncate(&bar.label, 21))
            }
            rect x=(label_width) y=(y + 2.0) width=(round(length)) height=(row - 4.0) fill=(bar.color) {}
            text x=(label_width + length + 4.0) y=(y + row * 0.68) font-size=(FONT) fill="#1a1a1a" {
                (bar.shown)
            }
        }
        line x1=(label_width) y1="0" x2=(label_width) y2=(height) stroke="#6b7280" stroke-width="0.8" {}
    };
    frame(caption, width, height, body)
}

/// Bars from a centre line, right for positive values and left for negative ones, over a
/// fixed range `-limit..=limit` (an index from −1 to +1); `None` values show their text only.
pub fn diverging_bars(
    caption: Caption<'_>,
    bars: &[(String, Option<f64>, String)],
    limit: f64,
    positive: &'static str,
    negative: &'static str,
) -> Markup {
    let width = 300.0;
    let label_width = 112.0;
    let row = 16.0;
    let height = row * bars.len().max(1) as f64 + 16.0;
    let span = (width - label_width - 40.0) / 2.0;
    let centre = label_width + 20.0 + span;
    let body = html! {
        @for (i, (label, value, shown)) in bars.iter().enumerate() {
            @let y = 2.0 + row * i as f64;
            text x=(label_width - 6.0) y=(y + row * 0.68) font-size=(FONT) text-anchor="end" fill="#1a1a1a" {
                (truncate(label, 21))
            }
            @if let Some(v) = value {
                @let length = span * (v.clamp(-limit, limit) / limit).abs();
                @let x = if *v < 0.0 { centre - length } else { centre };
                rect x=(round(x)) y=(y + 2.0) width=(round(length)) height=(row - 4.0)
                    fill=(if *v < 0.0 { negative } else { positive }) {}
                @let text_x = if *v < 0.0 { centre - length - 3.0 } else { centre + length + 3.0 };
                text x=(round(text_x)) y=(y + row * 0.68) font-size=(FONT)
                    text-anchor=(if *v < 0.0 { "end" } else { "start" }) fill="#1a1a1a" { (shown) }
            } @else {
                text x=(centre + 3.0) y=(y + row * 0.68) font-size=(FONT) fill="#4b5563" { (shown) }
            }
        }
        @let axis = height - 12.0;
        line x1=(centre) y1="0" x2=(centre) y2=(axis) stroke="#6b7280" stroke-width="0.8" {}
        line x1=(centre - span) y1=(axis) x2=(centre + span) y2=(axis) stroke="#9ca3af" stroke-width="0.6" {}
        text x=(centre - span) y=(axis + 10.0) font-size=(FONT - 1.0) text-anchor="middle" fill="#4b5563" { "\u{2212}1" }
        text x=(centre) y=(axis + 10.0) font-size=(FONT - 1.0) text-anchor="middle" fill="#4b5563" { "0" }
        text x=(centre + span) y=(axis + 10.0) font-size=(FONT - 1.0) text-anchor="middle" fill="#4b5563" { "+1" }
    };
    frame(caption, width, height, body)
}

/// The plot area of a chart with an x axis of labels and a y axis from `low` to `high`.
struct Plot {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    low: f64,
    high: f64,
    slots: usize,
}

impl Plot {
    fn y(&self, value: f64) -> f64 {
        let share = if self.high > self.low {
            (value - self.low) / (self.high - self.low)
        } else {
            0.0
        };
        self.top + self.height * (1.0 - share)
    }

    fn slot_width(&self) -> f64 {
        self.width / self.slots.max(1) as f64
    }

    fn x_centre(&self, slot: usize) -> f64 {
        self.left + self.slot_width() * (slot as f64 + 0.5)
    }

    /// Grid lines with their values, and the x labels (every other one when crowded).
    fn axes(&self, ticks: &[f64], shown: impl Fn(f64) -> String, labels: &[String]) -> Markup {
        let every = if labels.len() > 14 { 2 } else { 1 };
        html! {
            @for tick in ticks {
                @let y = round(self.y(*tick));
                line x1=(self.left) y1=(y) x2=(self.left + self.width) y2=(y)
                    stroke=(if *tick == 0.0 { "#6b7280" } else { "#d1d5db" }) stroke-width="0.6" {}
                text x=(self.left - 4.0) y=(y + 3.0) font-size=(FONT - 1.0) text-anchor="end" fill="#4b5563" {
                    (shown(*tick))
                }
            }
            @for (i, label) in labels.iter().enumerate() {
                @if i % every == 0 {
                    text x=(round(self.x_centre(i))) y=(self.top + self.height + 11.0)
                        font-size=(FONT - 1.0) text-anchor="middle" fill="#374151" { (label) }
                }
            }
        }
    }
}

/// Stacked columns (one stack per x label, one layer per series) with an optional line drawn
/// over them on the same scale, and a legend.
pub fn stacked_columns(
    caption: Caption<'_>,
    labels: &[String],
    stacks: &[Series],
    line: Option<&Series>,
    shown: impl Fn(f64) -> String,
) -> Markup {
    let width = 720.0;
    let height = 180.0;
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| stacks.iter().map(|s| value_at(s, i)).sum())
        .collect();
    let line_max = line.map_or(0.0, |l| {
        l.values.iter().flatten().copied().fold(0.0_f64, f64::max)
    });
    let max = totals.iter().copied().fold(line_max, f64::max);
    let (high, ticks) = nice_ticks(max);
    let plot = Plot {
        left: 36.0,
        top: 8.0,
        width: width - 44.0,
        height: height - 48.0,
        low: 0.0,
        high,
        slots: labels.len(),
    };
    let bar = plot.slot_width() * 0.64;
    let mut legend: Vec<(&str, &str, bool)> = stacks
        .iter()
        .map(|s| (s.name.as_str(), s.color, false))
        .collect();
    if let Some(l) = line {
        legend.push((l.name.as_str(), l.color, true));
    }
    let mut rects = Vec::new();
    for i in 0..labels.len() {
        let mut base = 0.0;
        for stack in stacks {
            let v = value_at(stack, i);
            if v > 0.0 {
                let (top, bottom) = (plot.y(base + v), plot.y(base));
                rects.push((plot.x_centre(i) - bar / 2.0, top, bottom - top, stack.color));
            }
            base += v;
        }
    }
    let body = html! {
        (plot.axes(&ticks, &shown, labels))
        @for (x, y, h, color) in rects {
            rect x=(round(x)) y=(round(y)) width=(round(bar)) height=(round(h)) fill=(color) {}
        }
        @if let Some(l) = line {
            (polyline(&plot, l))
        }
        (legend_row(&legend, plot.left, height - 10.0))
    };
    frame(caption, width, height, body)
}

/// Lines, one per series, over the x labels, from 0 up (the values drawn are counts).
pub fn lines(
    caption: Caption<'_>,
    labels: &[String],
    series: &[Series],
    shown: impl Fn(f64) -> String,
) -> Markup {
    let width = 720.0;
    let height = 140.0;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .fold(0.0_f64, f64::max);
    let (high, ticks) = nice_ticks(max);
    let plot = Plot {
        left: 36.0,
        top: 8.0,
        width: width - 44.0,
        height: height - 48.0,
        low: 0.0,
        high,
        slots: labels.len(),
    };
    let legend: Vec<(&str, &str, bool)> = series
        .iter()
        .map(|s| (s.name.as_str(), s.color, true))
        .collect();
    let body = html! {
        (plot.axes(&ticks, &shown, labels))
        @for s in series {
            (polyline(&plot, s))
        }
        (legend_row(&legend, plot.left, height - 10.0))
    };
    frame(caption, width, height, body)
}

fn polyline(plot: &Plot, series: &Series) -> Markup {
    // Consecutive known values form a segment; a gap breaks the line.
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (i, value) in series.values.iter().enumerate() {
        match value {
            Some(v) => segments
                .last_mut()
                .expect("one segment at least")
                .push((plot.x_centre(i), plot.y(*v))),
            None => segments.push(Vec::new()),
        }
    }
    html! {
        @for segment in segments.iter().filter(|s| !s.is_empty()) {
            @let points = segment.iter().map(|(x, y)| format!("{},{}", round(*x), round(*y))).collect::<Vec<_>>().join(" ");
            polyline points=(points) fill="none" stroke=(series.color) stroke-width="1.8" stroke-linejoin="round" {}
            @for (x, y) in segment {
                circle cx=(round(*x)) cy=(round(*y)) r="2.2" fill=(series.color) {}
            }
        }
    }
}

fn legend_row(items: &[(&str, &str, bool)], left: f64, y: f64) -> Markup {
    let mut x = left;
    let placed: Vec<(f64, &str, &str, bool)> = items
        .iter()
        .map(|(name, color, is_line)| {
            let at = x;
            x += 22.0 + name.chars().count() as f64 * 5.2;
            (at, *name, *color, *is_line)
        })
        .collect();
    html! {
        @for (x, name, color, is_line) in placed {
            @if is_line {
                line x1=(x) y1=(y - 3.0) x2=(x + 12.0) y2=(y - 3.0) stroke=(color) stroke-width="2" {}
            } @else {
                rect x=(x) y=(y - 8.0) width="10" height="10" fill=(color) {}
            }
            text x=(x + 15.0) y=(y) font-size=(FONT) fill="#1a1a1a" { (name) }
        }
    }
}

/// The background of a heat-table cell for `value` out of `max`: white to the report's blue,
/// and whether the text on it should be white for contrast.
pub fn heat(value: u64, max: u64) -> (String, bool) {
    if value == 0 || max == 0 {
        return ("#ffffff".to_owned(), false);
    }
    let share = 0.15 + 0.85 * value as f64 / max as f64;
    // From #e8f0f8 to #1f4e79.
    let mix = |from: f64, to: f64| (from + (to - from) * share).round() as u8;
    let colour = format!(
        "#{:02x}{:02x}{:02x}",
        mix(232.0, 31.0),
        mix(240.0, 78.0),
        mix(248.0, 121.0)
    );
    (colour, share > 0.55)
}

fn value_at(series: &Series, i: usize) -> f64 {
    series.values.get(i).copied().flatten().unwrap_or(0.0)
}

/// A round upper bound at or above `max` and 4 or 5 ticks from 0 to it.
fn nice_ticks(max: f64) -> (f64, Vec<f64>) {
    if max <= 0.0 {
        return (1.0, vec![0.0, 1.0]);
    }
    let rough = max / 4.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude)
        .max(1.0);
    let high = (max / step).ceil() * step;
    let ticks = (0..=((high / step).round() as usize))
        .map(|i| i as f64 * step)
        .collect();
    (high, ticks)
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(chars - 1).collect();
    out.push('\u{2026}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(7.0), (8.0, vec![0.0, 2.0, 4.0, 6.0, 8.0]));
        assert_eq!(nice_ticks(130.0).0, 150.0);
        assert_eq!(nice_ticks(0.0), (1.0, vec![0.0, 1.0]));
        assert_eq!(nice_ticks(2.0), (2.0, vec![0.0, 1.0, 2.0]));
    }

    #[test]
    fn a_chart_names_itself_for_assistive_technology() {
        let caption = Caption {
            id: "c",
            title: "Title <&>",
            desc: "Desc",
        };
        let bars = [Bar {
            label: "A".into(),
            value: 2.0,
            shown: "2".into(),
            color: "#000000",
        }];
        let svg = horizontal_bars(caption, &bars).into_string();
        assert!(svg.contains(r#"role="img""#), "{svg}");
        assert!(svg.contains(r#"aria-labelledby="c-title c-desc""#), "{svg}");
        assert!(
            svg.contains("<title id=\"c-title\">Title &lt;&amp;&gt;</title>"),
            "{svg}"
        );
        assert!(svg.contains("<desc id=\"c-desc\">Desc</desc>"), "{svg}");
    }
}
