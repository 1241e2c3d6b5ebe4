//! A case's timeline as inline SVG: one lane per container, the pod's phase on top, a time
//! axis in spec seconds below. Every text goes through maud, which escapes it.

use crate::timeline::{
    Band, Expected, Flag, Lane, ObservedStart, State, TickKind, Timeline, ViolationPin,
};
use maud::{html, Markup};

/// Drawing width in SVG units; the page scales it to the column.
const WIDTH: i64 = 960;
/// Room for the lane names on the left.
const GUTTER: i64 = 150;
const RIGHT_PAD: i64 = 24;
/// Room above the lanes for fault and violation labels.
const TOP: i64 = 30;
const PHASE_HEIGHT: i64 = 18;
const LANE_HEIGHT: i64 = 62;
const AXIS_HEIGHT: i64 = 24;
/// Approximate width of one character of the 10-unit font, to keep labels inside.
const CHAR_WIDTH: i64 = 6;

/// Maps spec milliseconds onto the drawing.
struct Scale {
    until_ms: i64,
}

impl Scale {
    fn of(timeline: &Timeline) -> Scale {
        Scale {
            until_ms: timeline.observed_until_ms.max(1000),
        }
    }

    fn x(&self, ms: i64) -> i64 {
        let plot = (WIDTH - GUTTER - RIGHT_PAD) as f64;
        GUTTER + (ms.clamp(0, self.until_ms) as f64 / self.until_ms as f64 * plot).round() as i64
    }

    /// The spacing of axis ticks: about ten of them, at a round number of seconds.
    fn tick_step_ms(&self) -> i64 {
        const STEPS: [i64; 12] = [
            500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000,
            1_800_000,
        ];
        STEPS
            .into_iter()
            .find(|step| self.until_ms / step <= 12)
            .unwrap_or(3_600_000)
    }
}

/// Spec milliseconds as seconds, as the axis and labels say them.
pub(crate) fn secs(ms: i64) -> String {
    let s = format!("{:.1}", ms as f64 / 1000.0);
    format!("{}s", s.strip_suffix(".0").unwrap_or(&s))
}

/// How a start outside its window is labelled, in full (`restart 3: 7.5s early`) and
/// short (`#3 7.5s early`); None inside its window or without one (an instance past the
/// plan: the violations say what was wrong with it).
pub(crate) fn start_offset_labels(start: &ObservedStart) -> Option<(String, String)> {
    let off = start.off_by_ms();
    if start.window.is_none() || off == 0 {
        return None;
    }
    let how = if off < 0 {
        format!("{} early", secs(-off))
    } else {
        format!("{} late", secs(off))
    };
    let what = if start.instance == 0 {
        "start".to_owned()
    } else {
        format!("restart {}", start.instance)
    };
    Some((
        format!("{what}: {how}"),
        format!("#{} {how}", start.instance),
    ))
}

/// Width of one character of the bold 12-unit labels of early and late starts.
const OFF_CHAR_WIDTH: i64 = 7;

/// A placed label: its text, where it is anchored and on which side.
struct PlacedLabel {
    text: String,
    x: i64,
    anchor: &'static str,
}

/// The labels of the starts outside their windows, each above its bracket (right of an
/// early start, left of a late one), in full where it fits, else short, else left out
/// (its bracket's hover title still says it): they never overlap.
fn place_start_labels(lane: &Lane, scale: &Scale) -> Vec<Option<PlacedLabel>> {
    let mut taken_until = i64::MIN;
    lane.starts
        .iter()
        .map(|start| {
            let (full, short) = start_offset_labels(start)?;
            let x = scale.x(start.at_ms);
            let early = start.off_by_ms() < 0;
            [full, short].into_iter().find_map(|text| {
                let width = text.chars().count() as i64 * OFF_CHAR_WIDTH;
                let (from, to) = if early {
                    (x + 3, x + 3 + width)
                } else {
                    (x - 3 - width, x - 3)
                };
                (from > taken_until + 6 && from >= 0 && to <= WIDTH).then(|| {
                    taken_until = to;
                    PlacedLabel {
                        text,
                        x: if early { x + 3 } else { x - 3 },
                        anchor: if early { "start" } else { "end" },
                    }
                })
            })
        })
        .collect()
}

fn state_class(state: &State) -> &'static str {
    match state {
        State::Waiting { .. } => "sw",
        State::Running => "sr",
        State::Terminated { exit_code: 0, .. } => "st0",
        State::Terminated { .. } => "st1",
    }
}

/// What a state segment says inside its bar when there is room.
fn state_text(instance: u32, state: &State) -> String {
    match state {
        State::Waiting { reason } if reason.is_empty() => format!("#{instance} Waiting"),
        State::Waiting { reason } => format!("#{instance} {reason}"),
        State::Running => format!("#{instance} Running"),
        State::Terminated { exit_code, .. } => format!("#{instance} exit {exit_code}"),
    }
}

fn band_class(what: Expected) -> &'static str {
    match what {
        Expected::Start => "bs",
        Expected::End => "be",
        Expected::Started | Expected::Ready | Expected::NotReady => "bf",
    }
}

fn band_title(band: &Band) -> String {
    format!(
        "#{} {}: {}–{}",
        band.instance,
        band.label,
        secs(band.from_ms),
        secs(band.until_ms)
    )
}

/// `text` cut to what fits in `width` drawing units; None when not even a few letters do.
fn fitted(text: &str, width: i64) -> Option<String> {
    let fits = usize::try_from(width / CHAR_WIDTH).ok()?;
    let count = text.chars().count();
    if count <= fits {
        Some(text.to_owned())
    } else if fits >= 4 {
        Some(text.chars().take(fits - 1).chain(['…']).collect())
    } else {
        None
    }
}

/// The violation's number on the drawing and in the list under it.
pub(crate) fn pin_number(index: usize) -> String {
    (index + 1).to_string()
}

/// The whole timeline of one case.
pub(crate) fn timeline_svg(timeline: &Timeline, id_prefix: &str) -> Markup {
    let scale = Scale::of(timeline);
    let lanes_top = TOP + PHASE_HEIGHT;
    let lanes_bottom = lanes_top + LANE_HEIGHT * timeline.lanes.len() as i64;
    let height = lanes_bottom + AXIS_HEIGHT;
    let view_box = format!("0 0 {WIDTH} {height}");
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" viewBox=(view_box) role="img" {
            title { "timeline over spec time; shaded: predicted windows, bars: observed states" }
            (axis(&scale, lanes_top, lanes_bottom))
            (phases(timeline, &scale))
            @for (index, lane) in timeline.lanes.iter().enumerate() {
                (lane_markup(lane, &scale, lanes_top + LANE_HEIGHT * index as i64))
            }
            @for fault in &timeline.faults {
                @let x = scale.x(fault.at_ms);
                g.fault {
                    title { (fault.action) " at " (secs(fault.at_ms)) " (due " (secs(fault.due_ms)) "): " (fault.result) }
                    line x1=(x) x2=(x) y1=(TOP - 12) y2=(lanes_bottom) {}
                    text x=(x + 3) y=(TOP - 14) { (fitted(&fault.action, 200).unwrap_or_default()) }
                }
            }
            @for (index, pin, x, numbered) in placed_pins(timeline, &scale) {
                (violation_pin(index, pin, x, numbered, lanes_bottom, id_prefix))
            }
        }
    }
}

fn axis(scale: &Scale, lanes_top: i64, lanes_bottom: i64) -> Markup {
    let step = scale.tick_step_ms();
    let ticks: Vec<i64> = (0..=scale.until_ms / step).map(|i| i * step).collect();
    html! {
        g.axis {
            line x1=(GUTTER) x2=(WIDTH - RIGHT_PAD) y1=(lanes_bottom) y2=(lanes_bottom) {}
            // One path for the grid: a thousand timelines' worth of lines adds up.
            @let grid: String = ticks.iter().map(|ms| format!("M{} {lanes_top}V{}", scale.x(*ms), lanes_bottom + 4)).collect();
            path.grid d=(grid) {}
            @for ms in ticks {
                text x=(scale.x(ms)) y=(lanes_bottom + 16) text-anchor="middle" { (secs(ms)) }
            }
            text x="4" y=(lanes_bottom + 16) { "spec time" }
        }
    }
}

fn phases(timeline: &Timeline, scale: &Scale) -> Markup {
    let y = TOP + 2;
    html! {
        g.phases {
            text.lane-name x="4" y=(y + 11) { "pod phase" }
            @for segment in &timeline.phases {
                @let (x1, x2) = (scale.x(segment.from_ms), scale.x(segment.until_ms));
                @let class = format!("ph ph-{}", segment.phase.split(' ').next().unwrap_or("").to_ascii_lowercase());
                rect class=(class) x=(x1) y=(y) width=((x2 - x1).max(1)) height=(PHASE_HEIGHT - 4) {
                    title { (segment.phase) " from " (secs(segment.from_ms)) }
                }
                @if let Some(label) = fitted(&segment.phase, x2 - x1 - 4) {
                    text x=(x1 + 3) y=(y + 10) { (label) }
                }
            }
        }
    }
}

fn lane_markup(lane: &Lane, scale: &Scale, top: i64) -> Markup {
    // Top to bottom: room for early/late labels, predicted windows, observed states, the
    // workload's log.
    let band_y = top + 16;
    let state_y = top + 32;
    let tick_y = top + 48;
    html! {
        g.lane {
            line.lane-sep x1="0" x2=(WIDTH) y1=(top) y2=(top) {}
            text.lane-name x="4" y=(state_y + 11) { (fitted(&lane.container, GUTTER - 8).unwrap_or_default()) }
            text.lane-kind x="4" y=(state_y + 23) { (lane.kind.as_str()) }
            @for band in &lane.predicted {
                @let (x1, x2) = (scale.x(band.from_ms), scale.x(band.until_ms));
                rect class=(band_class(band.what)) x=(x1) y=(band_y) width=((x2 - x1).max(2)) height="14" {
                    title { (band_title(band)) }
                }
                @if band.what == Expected::Start {
                    @if let Some(label) = fitted(&format!("#{}", band.instance), x2 - x1 - 2) {
                        text.band-label x=(x1 + 2) y=(band_y + 11) { (label) }
                    }
                }
            }
            @for segment in &lane.states {
                @let (x1, x2) = (scale.x(segment.from_ms), scale.x(segment.until_ms));
                @let text = state_text(segment.instance, &segment.state);
                @let label = fitted(&text, x2 - x1 - 4);
                // A hover title only where the bar is too narrow to say it all: a report of
                // a thousand crash loops stays small.
                @if label.as_deref() == Some(text.as_str()) {
                    rect class=(state_class(&segment.state)) x=(x1) y=(state_y) width=((x2 - x1).max(1)) height="14" {}
                } @else {
                    rect class=(state_class(&segment.state)) x=(x1) y=(state_y) width=((x2 - x1).max(1)) height="14" {
                        title { "#" (segment.instance) " " (segment.state.describe()) " " (secs(segment.from_ms)) "–" (secs(segment.until_ms)) }
                    }
                }
                @if let Some(label) = label {
                    text.state-label x=(x1 + 2) y=(state_y + 11) { (label) }
                }
            }
            (flips(lane, scale, state_y))
            (ticks(lane, scale, tick_y))
            @for (start, label) in lane.starts.iter().zip(place_start_labels(lane, scale)) {
                (start_marker(start, label, scale, band_y, state_y))
            }
        }
    }
}

/// The observed flips of `ready` and `started`: a small triangle on the state bar each,
/// one path per kind (a crash loop flips them at every restart).
fn flips(lane: &Lane, scale: &Scale, state_y: i64) -> Markup {
    let kinds = [
        ("fr1", Flag::Ready, true, "ready turned true"),
        ("fr0", Flag::Ready, false, "ready turned false"),
        ("fs", Flag::Started, true, "started turned true"),
    ];
    html! {
        @for (class, flag, to, what) in kinds {
            @let at: Vec<i64> = lane.flips.iter().filter(|f| f.flag == flag && f.to == to).map(|f| f.at_ms).collect();
            @if !at.is_empty() {
                @let path: String = at.iter().map(|ms| format!("M{} {state_y}l-3-5h6z", scale.x(*ms))).collect();
                @let times: Vec<String> = at.iter().map(|ms| secs(*ms)).collect();
                path class=(class) d=(path) { title { (what) " at " (times.join(", ")) } }
            }
        }
    }
}

/// Which ticks, by kind and success, a group of strokes holds.
type TickFilter = fn(TickKind, Option<bool>) -> bool;

/// The workload's log: one short stroke per line, grouped by kind so a case with hundreds
/// of probes stays small; each group's title lists what it holds.
fn ticks(lane: &Lane, scale: &Scale, y: i64) -> Markup {
    let groups: [(&str, TickFilter); 5] = [
        ("tk-ok", |k, ok| k == TickKind::Probe && ok != Some(false)),
        ("tk-fail", |k, ok| k == TickKind::Probe && ok == Some(false)),
        ("tk-hook", |k, _| k == TickKind::Hook),
        ("tk-signal", |k, _| {
            k == TickKind::Signal || k == TickKind::Error
        }),
        ("tk-life", |k, _| {
            k == TickKind::Start || k == TickKind::Exit
        }),
    ];
    html! {
        @for (class, belongs) in groups {
            @let members: Vec<_> = lane.ticks.iter().filter(|t| belongs(t.kind, t.ok)).collect();
            @if !members.is_empty() {
                @let path: String = members.iter().map(|t| format!("M{} {y}v10", scale.x(t.at_ms))).collect();
                @let listing: Vec<String> = members.iter().take(40).map(|t| format!("{} {}", secs(t.at_ms), t.label)).collect();
                path class=(class) d=(path) {
                    title {
                        (listing.join("\n"))
                        @if members.len() > 40 { "\n… " (members.len() - 40) " more" }
                    }
                }
            }
        }
    }
}

/// The observed start of an instance: a stroke through the band and state rows; outside
/// its window, in red, a bracket to the window's edge and how far off it was.
fn start_marker(
    start: &ObservedStart,
    label: Option<PlacedLabel>,
    scale: &Scale,
    band_y: i64,
    state_y: i64,
) -> Markup {
    let x = scale.x(start.at_ms);
    let Some((full, _)) = start_offset_labels(start) else {
        return html! { line.start x1=(x) x2=(x) y1=(band_y) y2=(state_y + 14) {} };
    };
    let edge = start.window.map(|(lo, hi)| {
        if start.at_ms < lo {
            scale.x(lo)
        } else {
            scale.x(hi)
        }
    });
    html! {
        g.off {
            title { (full) " (observed " (secs(start.at_ms)) @if let Some((lo, hi)) = start.window { ", expected " (secs(lo)) ".." (secs(hi)) } ")" }
            line x1=(x) x2=(x) y1=(band_y - 2) y2=(state_y + 14) {}
            @if let Some(edge) = edge {
                @let y = band_y + 7;
                path d=(format!("M{x} {y}H{edge}m0 -4v8M{x} {}v8", y - 4)) {}
            }
            @if let Some(label) = label {
                text x=(label.x) y=(band_y - 4) text-anchor=(label.anchor) { (label.text) }
            }
        }
    }
}

/// The violations seen at a known time, each with its place; a pin too close to the one
/// before keeps its line but not its numbered head, which would cover the other.
fn placed_pins<'t>(
    timeline: &'t Timeline,
    scale: &Scale,
) -> Vec<(usize, &'t ViolationPin, i64, bool)> {
    let mut last_head: Option<i64> = None;
    timeline
        .violations
        .iter()
        .enumerate()
        .filter_map(|(index, pin)| {
            let x = scale.x(pin.at_ms?);
            let numbered = last_head.is_none_or(|last| x - last >= 16);
            if numbered {
                last_head = Some(x);
            }
            Some((index, pin, x, numbered))
        })
        .collect()
}

fn violation_pin(
    index: usize,
    pin: &ViolationPin,
    x: i64,
    numbered: bool,
    lanes_bottom: i64,
    id_prefix: &str,
) -> Markup {
    html! {
        a href=(format!("#{id_prefix}-v-{}", index + 1)) {
            g.pin {
                title { (pin_number(index)) ". " (pin.rule) ": expected " (pin.expected) "; observed " (pin.observed) }
                line x1=(x) x2=(x) y1=(TOP - 8) y2=(lanes_bottom) {}
                @if numbered {
                    circle cx=(x) cy=(TOP - 8) r="7" {}
                    text x=(x) y=(TOP - 5) text-anchor="middle" { (pin_number(index)) }
                }
            }
        }
    }
}

/// The legend: what each mark means, drawn with the same classes.
pub(crate) fn legend() -> Markup {
    let items: [(&str, &str, &str); 12] = [
        ("rect", "sw", "Waiting"),
        ("rect", "sr", "Running"),
        ("rect", "st0", "Terminated, exit 0"),
        ("rect", "st1", "Terminated, exit ≠ 0"),
        ("rect", "bs", "predicted start window"),
        ("rect", "be", "predicted exit window"),
        ("rect", "bf", "predicted started/ready"),
        ("mark", "off", "start outside its window"),
        ("tick", "tk-ok", "probe answered ok"),
        ("tick", "tk-fail", "probe failed"),
        ("tick", "tk-hook", "hook call"),
        ("tick", "tk-signal", "SIGTERM"),
    ];
    html! {
        div.legend {
            @for (shape, class, text) in items {
                span {
                    svg xmlns="http://www.w3.org/2000/svg" width="18" height="14" viewBox="0 0 18 14" {
                        @match shape {
                            "rect" => { rect class=(class) x="1" y="1" width="16" height="12" {} },
                            "tick" => { path class=(class) d="M9 2v10" {} },
                            _ => { g class=(class) { line x1="9" x2="9" y1="1" y2="13" {} } },
                        }
                    }
                    (text)
                }
            }
            span { svg xmlns="http://www.w3.org/2000/svg" width="18" height="14" viewBox="0 0 18 14" { g.fault { line x1="9" x2="9" y1="1" y2="13" {} } } "fault action" }
            span { svg xmlns="http://www.w3.org/2000/svg" width="18" height="14" viewBox="0 0 18 14" { g.pin { circle cx="9" cy="7" r="6" {} } } "violation (numbered)" }
            span { "#N: instance N (restartCount)" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cut_to_their_room_and_left_out_without_any() {
        assert_eq!(fitted("#2 Running", 200).as_deref(), Some("#2 Running"));
        assert_eq!(fitted("#2 Running", 36).as_deref(), Some("#2 Ru…"));
        assert_eq!(fitted("#2 Running", 12), None);
        assert_eq!(fitted("#2 Running", -40), None);
    }
}
