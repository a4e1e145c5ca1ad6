//! The template of the regional report.
//!
//! The `data-metric` paths of the figures: a field of the metrics document by its JSON path
//! (`enrolments`, `transitions.reiteration`, `reiteration.distribution.3+`,
//! `time_in_stage_days.internship.closed.median`); an object's path (`active_at_end`,
//! `closures`) for the sum of its values; `transition_matrix.FROM.TO` for a cell of the
//! matrix (`FROM` = `(entry)` for first entries, 0 when the matrix has no such cell);
//! `breakdown.CHILD.PATH` and `series.FROM.PATH` for a child's or a month's document (`FROM`
//! being the point's first day); `audit.beneficiaries` for the length of the audit list and
//! `audit.ID.FIELD` for a field of one of its entries.

use filiera_contract::ReportLang;
use filiera_domain::metrics::{AuditEntry, Durations, Stats};
use filiera_domain::{CloseOutcome, TerritoryCode, TerritoryMetrics, Transition};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::RegionalReport;
use crate::i18n::{self, Text, dec, int, opt};
use crate::svg::{self, Bar, Caption, Series};

/// The style sheet, inlined.
const CSS: &str = include_str!("report.css");

/// The colours of the classifications, readable on white (WCAG AA for large marks).
const ENTRY: &str = "#2166ac";
const PROGRESSION: &str = "#1b7837";
const REITERATION: &str = "#b35806";
const REGRESSION: &str = "#b2182b";
const ACCENT: &str = "#1f4e79";
const GREY: &str = "#6b7280";

/// The audit rows printed at most; the count covers them all.
pub const AUDIT_ROWS: usize = 100;

/// The label of the matrix's first-entry row in `data-metric` paths.
pub const ENTRY_ROW: &str = "(entry)";

/// The whole document.
pub fn page(report: &RegionalReport<'_>) -> Markup {
    let t = i18n::text(report.lang);
    let territory = territory_label(report, report.documents.metrics.query.territory.as_ref());
    html! {
        (DOCTYPE)
        html lang=(report.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content=(format!("filiera {}", crate::VERSION));
                title { (t.title) " \u{2014} " (territory) }
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    (masthead(report, t, &territory))
                    (headline(report, t))
                    (transitions(report, t))
                    (reiterations(report, t))
                    (durations(report, t))
                    (children(report, t))
                    (series(report, t))
                    (audit(report, t))
                    (methods(report, t))
                    footer.colophon {
                        "filiera " (crate::VERSION) " \u{b7} " (t.data_as_of) ": " (data_as_of(report, t))
                    }
                }
            }
        }
    }
}

fn masthead(report: &RegionalReport<'_>, t: &Text, territory: &str) -> Markup {
    let query = &report.documents.metrics.query;
    html! {
        header.masthead {
            p.kicker { "filiera \u{b7} " (t.contents) }
            h1 { (t.title) }
            p.territory-name { (territory) }
            dl.facts {
                dt { (t.period) }
                dd { (period(report.lang, query.from, query.to)) }
                dt { (t.known_at) }
                dd { (instant(query.known_at)) }
                dt { (t.data_as_of) }
                dd { (data_as_of(report, t)) }
                dt { (t.threshold) " (" (t.reiterations_bucket) ")" }
                dd data-metric="reiteration.threshold" { (report.documents.metrics.reiteration.threshold) }
            }
        }
    }
}

fn headline(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let m = &report.documents.metrics;
    let lang = report.lang;
    let active: u64 = m.active_at_end.iter().map(|(_, n)| *n).sum();
    let kpis: [(&str, String, &str, bool); 8] = [
        ("enrolments", int(lang, m.enrolments), t.enrolments, false),
        ("active_at_end", int(lang, active), t.active_at_end, false),
        (
            "progressivity_index",
            opt(lang, m.progressivity_index, 2),
            t.progressivity_index,
            false,
        ),
        (
            "reiteration.flagged",
            int(lang, m.reiteration.flagged),
            t.flagged,
            m.reiteration.flagged > 0,
        ),
        ("reopenings", int(lang, m.reopenings), t.reopenings, false),
        ("closures", int(lang, m.closures.total()), t.closures, false),
        (
            "corrections",
            int(lang, m.corrections),
            t.corrections,
            false,
        ),
        (
            "spells_without_assessment",
            int(lang, m.spells_without_assessment),
            t.spells_without_assessment,
            false,
        ),
    ];
    html! {
        section aria-labelledby="headline" {
            h2 #headline { (t.headline) }
            ul.kpis {
                @for (path, shown, label, alert) in kpis {
                    li.kpi.alert[alert] {
                        span.value data-metric=(path) { (shown) }
                        span.label { (label) }
                    }
                }
            }
        }
    }
}

fn classifications(t: &Text) -> [(Transition, &'static str, &'static str, &'static str); 4] {
    [
        (Transition::Entry, "entry", t.entry, ENTRY),
        (
            Transition::Progression,
            "progression",
            t.progression,
            PROGRESSION,
        ),
        (
            Transition::Reiteration,
            "reiteration",
            t.reiteration,
            REITERATION,
        ),
        (
            Transition::Regression,
            "regression",
            t.regression,
            REGRESSION,
        ),
    ]
}

fn count_of(m: &TerritoryMetrics, transition: Transition) -> u64 {
    match transition {
        Transition::Entry => m.transitions.entry,
        Transition::Progression => m.transitions.progression,
        Transition::Reiteration => m.transitions.reiteration,
        Transition::Regression => m.transitions.regression,
    }
}

fn transitions(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let m = &report.documents.metrics;
    let lang = report.lang;
    let bars: Vec<Bar> = classifications(t)
        .iter()
        .map(|(kind, _, label, color)| Bar {
            label: (*label).to_owned(),
            value: count_of(m, *kind) as f64,
            shown: int(lang, count_of(m, *kind)),
            color,
        })
        .collect();
    let total = m.transitions.entry
        + m.transitions.progression
        + m.transitions.reiteration
        + m.transitions.regression;
    html! {
        section aria-labelledby="transitions" {
            h2 #transitions { (t.transitions) }
            div.grid2 {
                figure {
                    figcaption { (t.transitions_desc) }
                    (svg::horizontal_bars(Caption { id: "chart-transitions", title: t.transitions, desc: t.transitions_desc }, &bars))
                }
                table {
                    thead { tr { th scope="col" { (t.transitions) } th scope="col" { (t.count) } } }
                    tbody {
                        @for (kind, key, label, color) in classifications(t) {
                            tr {
                                th scope="row" { span.swatch style=(format!("background:{color}")) {} (label) }
                                td data-metric=(format!("transitions.{key}")) { (int(lang, count_of(m, kind))) }
                            }
                        }
                    }
                    tfoot { tr { th scope="row" { (t.total) } td { (int(lang, total)) } } }
                }
            }
            (matrix(report, t))
        }
    }
}

/// The stage codes in catalogue order, then any other code the documents name.
fn stage_codes(report: &RegionalReport<'_>) -> Vec<String> {
    let mut codes: Vec<String> = report
        .catalogue
        .stages()
        .iter()
        .map(|s| s.code.as_str().to_owned())
        .collect();
    for cell in &report.documents.metrics.transition_matrix {
        for code in cell.from.iter().chain(std::iter::once(&cell.to)) {
            if !codes.iter().any(|c| c == code.as_str()) {
                codes.push(code.as_str().to_owned());
            }
        }
    }
    codes
}

fn stage_label(report: &RegionalReport<'_>, code: &str) -> String {
    i18n::stage_label(report.lang, code, report.catalogue.get(code))
}

fn matrix(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let m = &report.documents.metrics;
    let lang = report.lang;
    let codes = stage_codes(report);
    let count = |from: Option<&str>, to: &str| -> u64 {
        m.transition_matrix
            .iter()
            .filter(|c| c.from.as_ref().map(|f| f.as_str()) == from && c.to.as_str() == to)
            .map(|c| c.count)
            .sum()
    };
    let max = m
        .transition_matrix
        .iter()
        .map(|c| c.count)
        .max()
        .unwrap_or(0);
    let mut rows: Vec<(Option<&str>, String)> = vec![(None, t.first_entry.to_owned())];
    rows.extend(
        codes
            .iter()
            .map(|c| (Some(c.as_str()), stage_label(report, c))),
    );
    html! {
        table.matrix {
            caption { (t.matrix) ". " span.caption-note { (t.matrix_caption) } }
            thead {
                tr {
                    th scope="col" { (t.from_to) }
                    @for code in &codes { th scope="col" { (stage_label(report, code)) } }
                    th scope="col" { (t.total) }
                }
            }
            tbody {
                @for (from, label) in &rows {
                    tr {
                        th scope="row" { (label) }
                        @for to in &codes {
                            @let n = count(*from, to);
                            @let (background, light) = svg::heat(n, max);
                            td.light[light] style=(format!("background:{background}"))
                                data-metric=(format!("transition_matrix.{}.{to}", from.unwrap_or(ENTRY_ROW))) {
                                (int(lang, n))
                            }
                        }
                        td { (int(lang, codes.iter().map(|to| count(*from, to)).sum())) }
                    }
                }
            }
        }
    }
}

fn reiterations(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let m = &report.documents.metrics;
    let lang = report.lang;
    let distribution: Vec<Bar> = m
        .reiteration
        .distribution
        .buckets()
        .iter()
        .map(|(key, n)| Bar {
            label: format!("{key} {}", t.reiterations_bucket),
            value: *n as f64,
            shown: int(lang, *n),
            color: if *key == "0" { ACCENT } else { REITERATION },
        })
        .collect();
    let active: Vec<(String, String, u64)> = m
        .active_at_end
        .iter()
        .map(|(key, n)| {
            let label = match key {
                filiera_domain::metrics::WAITING => t.waiting.to_owned(),
                code => stage_label(report, code),
            };
            (key.to_owned(), label, *n)
        })
        .collect();
    let active_bars: Vec<Bar> = active
        .iter()
        .map(|(key, label, n)| Bar {
            label: label.clone(),
            value: *n as f64,
            shown: int(lang, *n),
            color: if key == filiera_domain::metrics::WAITING {
                GREY
            } else {
                ACCENT
            },
        })
        .collect();
    html! {
        section aria-labelledby="reiterations" {
            h2 #reiterations { (t.reiterations) }
            div.grid2 {
                div {
                    figure {
                        figcaption { (t.distribution) }
                        (svg::horizontal_bars(Caption { id: "chart-distribution", title: t.distribution, desc: t.distribution_desc }, &distribution))
                    }
                    table {
                        thead { tr { th scope="col" { (t.reiterations_bucket) } th scope="col" { (t.beneficiaries) } } }
                        tbody {
                            @for (key, n) in m.reiteration.distribution.buckets() {
                                tr { th scope="row" { (key) } td data-metric=(format!("reiteration.distribution.{key}")) { (int(lang, n)) } }
                            }
                        }
                        tfoot {
                            tr {
                                th scope="row" { (t.flagged) " (" (t.threshold_note) " " (m.reiteration.threshold) ")" }
                                td data-metric="reiteration.flagged" { (int(lang, m.reiteration.flagged)) }
                            }
                        }
                    }
                }
                div {
                    figure {
                        figcaption { (t.active_at_end) }
                        (svg::horizontal_bars(Caption { id: "chart-active", title: t.active_at_end, desc: t.active_desc }, &active_bars))
                    }
                    table {
                        thead { tr { th scope="col" { (t.stage) } th scope="col" { (t.beneficiaries) } } }
                        tbody {
                            @for (key, label, n) in &active {
                                tr { th scope="row" { (label) } td data-metric=(format!("active_at_end.{key}")) { (int(lang, *n)) } }
                            }
                        }
                        tfoot { tr { th scope="row" { (t.total) } td data-metric="active_at_end" { (int(lang, active.iter().map(|(_, _, n)| n).sum())) } } }
                    }
                }
            }
        }
    }
}

fn stats_cells(lang: ReportLang, path: &str, stats: &Stats) -> Markup {
    html! {
        td data-metric=(format!("{path}.count")) { (int(lang, stats.count)) }
        td data-metric=(format!("{path}.mean")) { (opt(lang, stats.mean, 1)) }
        td data-metric=(format!("{path}.median")) { (opt(lang, stats.median, 1)) }
        td data-metric=(format!("{path}.p90")) { (opt(lang, stats.p90, 1)) }
    }
}

fn durations(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let m = &report.documents.metrics;
    let lang = report.lang;
    let mut rows: Vec<(String, String, &Durations)> = vec![(
        t.pathway.to_owned(),
        "time_in_pathway_days".to_owned(),
        &m.time_in_pathway_days,
    )];
    rows.extend(m.time_in_stage_days.iter().map(|(code, durations)| {
        (
            stage_label(report, code),
            format!("time_in_stage_days.{code}"),
            durations,
        )
    }));
    html! {
        section.keep aria-labelledby="durations" {
            h2 #durations { (t.durations) }
            p.note { (t.durations_caption) }
            table {
                thead {
                    tr {
                        td {}
                        th.group scope="colgroup" colspan="4" { (t.closed) }
                        th.group scope="colgroup" colspan="4" { (t.open) }
                    }
                    tr {
                        th scope="col" { (t.stage) }
                        @for _ in 0..2 {
                            th scope="col" { (t.count) } th scope="col" { (t.mean) }
                            th scope="col" { (t.median) } th scope="col" { (t.p90) }
                        }
                    }
                }
                tbody {
                    @for (label, path, d) in &rows {
                        tr {
                            th scope="row" { (label) }
                            (stats_cells(lang, &format!("{path}.closed"), &d.closed))
                            (stats_cells(lang, &format!("{path}.open"), &d.open))
                        }
                    }
                }
            }
            table {
                caption { (t.closures_caption) }
                thead {
                    tr {
                        th scope="col" { (t.outcome) }
                        @for outcome in CloseOutcome::ALL { th scope="col" { (i18n::outcome_label(lang, outcome)) } }
                        th scope="col" { (t.total) }
                    }
                }
                tbody {
                    tr {
                        th scope="row" { (t.closures) }
                        @for outcome in CloseOutcome::ALL {
                            td data-metric=(format!("closures.{}", outcome.as_str())) { (int(lang, m.closures.get(outcome))) }
                        }
                        td data-metric="closures" { (int(lang, m.closures.total())) }
                    }
                }
            }
        }
    }
}

fn children(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let lang = report.lang;
    let children = &report.documents.breakdown.children;
    let named: Vec<(String, &TerritoryCode, &TerritoryMetrics)> = children
        .iter()
        .map(|c| {
            let name = report.registry.name(&c.territory).unwrap_or("").to_owned();
            (name, &c.territory, &c.metrics)
        })
        .collect();
    let enrolments: Vec<Bar> = named
        .iter()
        .map(|(name, code, m)| Bar {
            label: short_name(name, code),
            value: m.enrolments as f64,
            shown: int(lang, m.enrolments),
            color: ACCENT,
        })
        .collect();
    let index: Vec<(String, Option<f64>, String)> = named
        .iter()
        .map(|(name, code, m)| {
            (
                short_name(name, code),
                m.progressivity_index,
                m.progressivity_index
                    .map_or_else(|| t.no_value.to_owned(), |v| dec(lang, v, 2)),
            )
        })
        .collect();
    html! {
        section.keep aria-labelledby="children" {
            h2 #children { (t.children) }
            @if named.is_empty() {
                p.empty { (t.children_none) }
            } @else {
                table.compact {
                    thead {
                        tr {
                            th scope="col" { (t.territory) }
                            (short_heading(t.enrolments, t.short.enrolments))
                            (short_heading(t.active_at_end, t.short.active))
                            (short_heading(t.progression, t.short.progression))
                            (short_heading(t.reiteration, t.short.reiteration))
                            (short_heading(t.regression, t.short.regression))
                            (short_heading(t.progressivity_index, t.short.index))
                            (short_heading(t.flagged, t.short.flagged))
                            (short_heading(t.closures, t.short.closures))
                        }
                    }
                    tbody {
                        @for (name, code, m) in &named {
                            @let p = format!("breakdown.{}", code.as_str());
                            tr {
                                th scope="row" { (name) br; span.code { (code.as_str()) } }
                                td data-metric=(format!("{p}.enrolments")) { (int(lang, m.enrolments)) }
                                td data-metric=(format!("{p}.active_at_end")) { (int(lang, m.active_at_end.iter().map(|(_, n)| n).sum())) }
                                td data-metric=(format!("{p}.transitions.progression")) { (int(lang, m.transitions.progression)) }
                                td data-metric=(format!("{p}.transitions.reiteration")) { (int(lang, m.transitions.reiteration)) }
                                td data-metric=(format!("{p}.transitions.regression")) { (int(lang, m.transitions.regression)) }
                                td data-metric=(format!("{p}.progressivity_index")) { (opt(lang, m.progressivity_index, 2)) }
                                td data-metric=(format!("{p}.reiteration.flagged")) { (int(lang, m.reiteration.flagged)) }
                                td data-metric=(format!("{p}.closures")) { (int(lang, m.closures.total())) }
                            }
                        }
                    }
                }
                div.grid2 {
                    figure {
                        figcaption { (t.enrolments) }
                        (svg::horizontal_bars(Caption { id: "chart-children-enrolments", title: t.enrolments, desc: t.children_enrolments_desc }, &enrolments))
                    }
                    figure {
                        figcaption { (t.progressivity_index) }
                        (svg::diverging_bars(Caption { id: "chart-children-index", title: t.progressivity_index, desc: t.children_index_desc }, &index, 1.0, PROGRESSION, REGRESSION))
                    }
                }
            }
        }
    }
}

fn series(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let lang = report.lang;
    let points = &report.documents.series.points;
    let labels: Vec<String> = points
        .iter()
        .map(|p| i18n::short_month(lang, p.from))
        .collect();
    let stacks: Vec<Series> = classifications(t)
        .iter()
        .map(|(kind, _, label, color)| Series {
            name: (*label).to_owned(),
            color,
            values: points
                .iter()
                .map(|p| Some(count_of(&p.metrics, *kind) as f64))
                .collect(),
        })
        .collect();
    let enrolments = Series {
        name: t.enrolments.to_owned(),
        color: "#111827",
        values: points
            .iter()
            .map(|p| Some(p.metrics.enrolments as f64))
            .collect(),
    };
    let active = |m: &TerritoryMetrics| m.active_at_end.iter().map(|(_, n)| *n).sum::<u64>();
    let lines = [
        Series {
            name: t.active_at_end.to_owned(),
            color: ACCENT,
            values: points
                .iter()
                .map(|p| Some(active(&p.metrics) as f64))
                .collect(),
        },
        Series {
            name: t.flagged.to_owned(),
            color: REITERATION,
            values: points
                .iter()
                .map(|p| Some(p.metrics.reiteration.flagged as f64))
                .collect(),
        },
    ];
    let count = |v: f64| int(lang, v.round().max(0.0) as u64);
    html! {
        section.page-break aria-labelledby="series" {
            h2 #series { (t.series) }
            p.note { (t.series_note) }
            figure {
                figcaption { (t.stage_entries) " / " (t.enrolments) }
                (svg::stacked_columns(Caption { id: "chart-series-entries", title: t.stage_entries, desc: t.entries_desc }, &labels, &stacks, Some(&enrolments), count))
            }
            figure {
                figcaption { (t.active_at_end) " / " (t.flagged) }
                (svg::lines(Caption { id: "chart-series-active", title: t.active_at_end, desc: t.active_series_desc }, &labels, &lines, count))
            }
            table.compact {
                thead {
                    tr {
                        th scope="col" { (t.month) }
                        (short_heading(t.enrolments, t.short.enrolments))
                        (short_heading(t.entry, t.short.entry))
                        (short_heading(t.progression, t.short.progression))
                        (short_heading(t.reiteration, t.short.reiteration))
                        (short_heading(t.regression, t.short.regression))
                        (short_heading(t.progressivity_index, t.short.index))
                        (short_heading(t.active_at_end, t.short.active))
                        (short_heading(t.flagged, t.short.flagged))
                    }
                }
                tbody {
                    @for (point, label) in points.iter().zip(&labels) {
                        @let p = format!("series.{}", point.from);
                        @let m = &point.metrics;
                        tr {
                            th scope="row" { time datetime=(point.from.to_string()) { (label) } }
                            td data-metric=(format!("{p}.enrolments")) { (int(lang, m.enrolments)) }
                            td data-metric=(format!("{p}.transitions.entry")) { (int(lang, m.transitions.entry)) }
                            td data-metric=(format!("{p}.transitions.progression")) { (int(lang, m.transitions.progression)) }
                            td data-metric=(format!("{p}.transitions.reiteration")) { (int(lang, m.transitions.reiteration)) }
                            td data-metric=(format!("{p}.transitions.regression")) { (int(lang, m.transitions.regression)) }
                            td data-metric=(format!("{p}.progressivity_index")) { (opt(lang, m.progressivity_index, 2)) }
                            td data-metric=(format!("{p}.active_at_end")) { (int(lang, active(m))) }
                            td data-metric=(format!("{p}.reiteration.flagged")) { (int(lang, m.reiteration.flagged)) }
                        }
                    }
                }
            }
        }
    }
}

fn audit(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let lang = report.lang;
    let list = &report.documents.audit;
    let shown: Vec<&AuditEntry> = list.beneficiaries.iter().take(AUDIT_ROWS).collect();
    html! {
        section aria-labelledby="audit" {
            h2 #audit { (t.audit) }
            p.note { (t.audit_intro) }
            ul.kpis {
                li.kpi.alert[!list.beneficiaries.is_empty()] {
                    span.value data-metric="audit.beneficiaries" { (int(lang, list.beneficiaries.len() as u64)) }
                    span.label { (t.flagged_count) }
                }
                li.kpi {
                    span.value { (list.threshold) }
                    span.label { (t.threshold) " (" (t.stalled) ")" }
                }
            }
            @if shown.is_empty() {
                p.empty { (t.audit_none) }
            } @else {
                table.compact {
                    thead {
                        tr {
                            th scope="col" { (t.pseudonymous_id) }
                            th.text scope="col" { (t.territory) }
                            (short_heading(t.stalled, t.short.stalled))
                            (short_heading(t.total_reiterations, t.short.total_reiterations))
                            th.text scope="col" { (t.current_stage) }
                            th.text scope="col" { (t.occupability) }
                            th.text scope="col" { (t.last_transition) }
                        }
                    }
                    tbody {
                        @for entry in &shown {
                            @let p = format!("audit.{}", entry.beneficiary_id);
                            tr {
                                th.id scope="row" { (entry.beneficiary_id) }
                                td.text.code { (entry.territory.as_str()) }
                                td data-metric=(format!("{p}.stalled_reiterations")) { (int(lang, u64::from(entry.stalled_reiterations))) }
                                td data-metric=(format!("{p}.total_reiterations")) { (int(lang, u64::from(entry.total_reiterations))) }
                                td.text { (entry.current_stage.as_ref().map_or_else(|| "\u{2014}".to_owned(), |s| stage_label(report, s.as_str()))) }
                                td.text { (entry.occupability.map_or("\u{2014}", |o| i18n::occupability_label(lang, o.as_str()))) }
                                td.text {
                                    @if let Some(last) = entry.transitions.last() {
                                        (stage_label(report, last.stage.as_str())) br;
                                        span.when { (last.on.to_string()) " \u{b7} " (transition_label(t, last.classification)) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if list.beneficiaries.len() > shown.len() {
                    p.note { (t.audit_more) }
                }
            }
        }
    }
}

fn methods(report: &RegionalReport<'_>, t: &Text) -> Markup {
    let query = &report.documents.metrics.query;
    let series = &report.documents.series.points;
    html! {
        aside.methods aria-labelledby="methods" {
            h2 #methods { (t.methods) }
            p { (t.methods_intro) }
            dl {
                @for (term, definition) in t.definitions {
                    dt { (term) } dd { (definition) }
                }
                dt { (t.period) } dd { (period(report.lang, query.from, query.to)) " (" (query.from.to_string()) " \u{2013} " (query.to.to_string()) ")" }
                dt { (t.series) }
                dd {
                    @if let (Some(first), Some(last)) = (series.first(), series.last()) {
                        (first.from.to_string()) " \u{2013} " (last.to.to_string())
                    }
                }
                dt { (t.known_at) } dd { code { (query.known_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) } }
                dt { (t.data_as_of) } dd { (data_as_of(report, t)) }
                dt { (t.threshold) } dd { (report.documents.metrics.reiteration.threshold) }
                dt { (t.version) } dd { (crate::VERSION) }
            }
            p.note { code { (t.print_note) } }
        }
    }
}

/// A column heading shortened, spelled out for assistive technology and on hover.
fn short_heading(full: &str, short: &str) -> Markup {
    html! {
        th scope="col" { abbr title=(full) { (short) } }
    }
}

fn transition_label(t: &Text, transition: Transition) -> &'static str {
    match transition {
        Transition::Entry => t.entry,
        Transition::Progression => t.progression,
        Transition::Reiteration => t.reiteration,
        Transition::Regression => t.regression,
    }
}

fn territory_label(report: &RegionalReport<'_>, code: Option<&TerritoryCode>) -> String {
    let t = i18n::text(report.lang);
    match code {
        None => t.all_territories.to_owned(),
        Some(code) => match report.registry.name(code) {
            Some(name) => format!("{name} ({})", code.as_str()),
            None => code.as_str().to_owned(),
        },
    }
}

fn short_name(name: &str, code: &TerritoryCode) -> String {
    if name.is_empty() {
        code.as_str().to_owned()
    } else {
        name.to_owned()
    }
}

fn period(lang: ReportLang, from: chrono::NaiveDate, to: chrono::NaiveDate) -> String {
    format!("{} \u{2013} {}", i18n::day(lang, from), i18n::day(lang, to))
}

fn instant(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn data_as_of(report: &RegionalReport<'_>, t: &Text) -> String {
    let data = report.data_as_of;
    match data.recorded_at {
        Some(at) => format!("{} ({} {})", instant(at), t.feed_position, data.position),
        None => format!("{} ({} {})", t.empty_feed, t.feed_position, data.position),
    }
}
