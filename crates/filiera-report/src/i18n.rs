//! The report's words in Italian and English, and numbers written the way each language
//! writes them (`1.234,5` and `1,234.5`).

use chrono::{Datelike, NaiveDate};
use filiera_contract::ReportLang;
use filiera_domain::{CloseOutcome, Stage};

/// Every fixed text of the report in one language.
pub struct Text {
    pub title: &'static str,
    pub all_territories: &'static str,
    pub period: &'static str,
    pub known_at: &'static str,
    pub data_as_of: &'static str,
    pub feed_position: &'static str,
    pub empty_feed: &'static str,
    pub version: &'static str,
    pub contents: &'static str,

    pub headline: &'static str,
    pub enrolments: &'static str,
    pub reopenings: &'static str,
    pub active_at_end: &'static str,
    pub progressivity_index: &'static str,
    pub flagged: &'static str,
    pub closures: &'static str,
    pub corrections: &'static str,
    pub spells_without_assessment: &'static str,
    pub threshold_note: &'static str,

    pub transitions: &'static str,
    pub transitions_desc: &'static str,
    pub entry: &'static str,
    pub progression: &'static str,
    pub reiteration: &'static str,
    pub regression: &'static str,
    pub matrix: &'static str,
    pub matrix_caption: &'static str,
    pub from_to: &'static str,
    pub first_entry: &'static str,
    pub total: &'static str,

    pub reiterations: &'static str,
    pub distribution: &'static str,
    pub distribution_desc: &'static str,
    pub reiterations_bucket: &'static str,
    pub beneficiaries: &'static str,
    pub active_desc: &'static str,
    pub waiting: &'static str,

    pub durations: &'static str,
    pub durations_caption: &'static str,
    pub closed: &'static str,
    pub open: &'static str,
    pub count: &'static str,
    pub mean: &'static str,
    pub median: &'static str,
    pub p90: &'static str,
    pub pathway: &'static str,
    pub stage: &'static str,
    pub outcome: &'static str,
    pub closures_caption: &'static str,

    pub children: &'static str,
    pub children_none: &'static str,
    pub territory: &'static str,
    pub children_enrolments_desc: &'static str,
    pub children_index_desc: &'static str,
    pub no_value: &'static str,

    pub series: &'static str,
    pub series_note: &'static str,
    pub month: &'static str,
    pub entries_desc: &'static str,
    pub active_series_desc: &'static str,
    pub stage_entries: &'static str,

    pub audit: &'static str,
    pub audit_intro: &'static str,
    pub audit_none: &'static str,
    pub audit_more: &'static str,
    pub pseudonymous_id: &'static str,
    pub stalled: &'static str,
    pub total_reiterations: &'static str,
    pub current_stage: &'static str,
    pub occupability: &'static str,
    pub last_transition: &'static str,
    pub flagged_count: &'static str,
    pub threshold: &'static str,

    pub short: Short,

    pub methods: &'static str,
    pub methods_intro: &'static str,
    pub definitions: &'static [(&'static str, &'static str)],
    pub print_note: &'static str,
}

/// Column headings short enough for a table of many numbers (each spelled out in an
/// `<abbr title>`).
pub struct Short {
    pub enrolments: &'static str,
    pub active: &'static str,
    pub entry: &'static str,
    pub progression: &'static str,
    pub reiteration: &'static str,
    pub regression: &'static str,
    pub index: &'static str,
    pub flagged: &'static str,
    pub closures: &'static str,
    pub stalled: &'static str,
    pub total_reiterations: &'static str,
}

/// The texts of `lang`.
pub fn text(lang: ReportLang) -> &'static Text {
    match lang {
        ReportLang::It => &IT,
        ReportLang::En => &EN,
    }
}

static IT: Text = Text {
    title: "Rapporto di monitoraggio regionale",
    all_territories: "Tutti i territori",
    period: "Periodo",
    known_at: "Dati noti al",
    data_as_of: "Dati aggiornati al",
    feed_position: "posizione del feed",
    empty_feed: "nessun evento registrato",
    version: "Versione di filiera",
    contents: "monitoraggio dei percorsi di inclusione",
    headline: "Indicatori principali",
    enrolments: "Prese in carico",
    reopenings: "Riaperture",
    active_at_end: "Attivi a fine periodo",
    progressivity_index: "Indice di progressività",
    flagged: "Reiterazioni segnalate",
    closures: "Percorsi chiusi",
    corrections: "Correzioni",
    spells_without_assessment: "Percorsi senza valutazione multidisciplinare",
    threshold_note: "soglia",
    transitions: "Transizioni tra fasi",
    transitions_desc: "Ingressi in una fase nel periodo, per classificazione.",
    entry: "Primo ingresso",
    progression: "Progressione",
    reiteration: "Reiterazione",
    regression: "Regressione",
    matrix: "Matrice delle transizioni",
    matrix_caption: "Ingressi nel periodo dalla fase di provenienza (righe) alla fase di arrivo (colonne).",
    from_to: "Da \u{2193} / a \u{2192}",
    first_entry: "(primo ingresso)",
    total: "Totale",
    reiterations: "Reiterazioni e fasi attive",
    distribution: "Distribuzione delle reiterazioni",
    distribution_desc: "Beneficiari per numero di reiterazioni cumulate a fine periodo.",
    reiterations_bucket: "reiterazioni",
    beneficiaries: "beneficiari",
    active_desc: "Beneficiari con un percorso aperto a fine periodo, per fase aperta.",
    waiting: "In attesa (nessuna fase aperta)",
    durations: "Permanenza nelle fasi e nel percorso (giorni)",
    durations_caption: "Chiusi: conclusi nel periodo (uscita \u{2212} ingresso). Aperti: ancora in corso a fine periodo (fine periodo \u{2212} ingresso).",
    closed: "Chiusi",
    open: "Aperti",
    count: "N.",
    mean: "Media",
    median: "Mediana",
    p90: "90\u{b0} perc.",
    pathway: "Percorso",
    stage: "Fase",
    outcome: "Esito",
    closures_caption: "Percorsi chiusi nel periodo, per esito.",
    children: "Confronto tra i territori",
    children_none: "Il territorio non ha territori subordinati nell'anagrafe.",
    territory: "Territorio",
    children_enrolments_desc: "Prese in carico nel periodo per territorio.",
    children_index_desc: "Indice di progressività per territorio (da \u{2212}1 a +1).",
    no_value: "n.d.",
    series: "Andamento mensile",
    series_note: "Ultimi mesi del periodo (al massimo 24); ogni mese è calcolato come il documento principale su quel mese.",
    month: "Mese",
    entries_desc: "Ingressi in una fase per mese, per classificazione; la linea indica le prese in carico.",
    active_series_desc: "Beneficiari attivi a fine mese e beneficiari segnalati.",
    stage_entries: "Ingressi in fase",
    audit: "Verifica delle reiterazioni",
    audit_intro: "Beneficiari segnalati a fine periodo: reiterazioni senza progresso pari o superiori alla soglia. Solo identificativi pseudonimi.",
    audit_none: "Nessun beneficiario segnalato.",
    audit_more: "Altri beneficiari segnalati non sono elencati qui: l'elenco completo è in GET /v1/audit/reiterations.",
    pseudonymous_id: "Identificativo pseudonimo",
    stalled: "Reiterazioni senza progresso",
    total_reiterations: "Reiterazioni totali",
    current_stage: "Fase attuale",
    occupability: "Occupabilità",
    last_transition: "Ultima transizione",
    flagged_count: "Beneficiari segnalati",
    threshold: "Soglia",
    short: Short {
        enrolments: "Prese in c.",
        active: "Attivi",
        entry: "Primo ingr.",
        progression: "Progr.",
        reiteration: "Reiter.",
        regression: "Regr.",
        index: "Indice",
        flagged: "Segnalati",
        closures: "Chiusi",
        stalled: "Senza progr.",
        total_reiterations: "Totali",
    },
    methods: "Nota metodologica",
    methods_intro: "Tutte le cifre sono calcolate dagli eventi registrati, immutabili, con le regole seguenti. Contano solo gli eventi non annullati registrati entro la data «dati noti al» e con data effettiva entro la fine del periodo; ogni fatto è attribuito al territorio in vigore all'evento che lo inizia. Le durate sono in giorni interi.",
    definitions: &[
        (
            "Prese in carico",
            "eventi di presa in carico con data nel periodo.",
        ),
        ("Riaperture", "percorsi riaperti con data nel periodo."),
        (
            "Transizioni",
            "ingressi in una fase con data nel periodo, classificati al momento della registrazione: primo ingresso, progressione (livello superiore), reiterazione (stesso livello), regressione (livello inferiore).",
        ),
        (
            "Indice di progressività",
            "(progressioni \u{2212} regressioni) / (progressioni + reiterazioni + regressioni); non definito se il denominatore è 0. Varia da \u{2212}1 a +1.",
        ),
        (
            "Distribuzione delle reiterazioni",
            "beneficiari nel territorio a fine periodo con almeno un ingresso in fase, per numero di reiterazioni cumulate (0, 1, 2, 3 o più).",
        ),
        (
            "Reiterazioni segnalate",
            "tra questi, i beneficiari le cui reiterazioni senza progresso raggiungono la soglia.",
        ),
        (
            "Attivi a fine periodo",
            "beneficiari con un percorso aperto a fine periodo, per fase aperta o in attesa.",
        ),
        (
            "Permanenza",
            "conteggio, media, mediana e 90\u{b0} percentile (interpolazione lineare) delle durate dei percorsi e delle fasi concluse nel periodo o aperte a fine periodo.",
        ),
        (
            "Percorsi chiusi",
            "chiusure con data nel periodo, per esito.",
        ),
        (
            "Correzioni",
            "annullamenti registrati (data di registrazione UTC) nel periodo.",
        ),
        (
            "Percorsi senza valutazione multidisciplinare",
            "percorsi iniziati nel periodo senza valutazione multidisciplinare entro la fine del periodo.",
        ),
    ],
    print_note: "Per stamparlo in PDF: chromium --headless --no-sandbox --disable-gpu --no-pdf-header-footer --print-to-pdf=rapporto.pdf rapporto.html",
};

static EN: Text = Text {
    title: "Regional monitoring report",
    all_territories: "All territories",
    period: "Period",
    known_at: "As known at",
    data_as_of: "Data as of",
    feed_position: "feed position",
    empty_feed: "no event recorded",
    version: "filiera version",
    contents: "inclusion pathway monitoring",
    headline: "Headline figures",
    enrolments: "Enrolments",
    reopenings: "Reopenings",
    active_at_end: "Active at end of period",
    progressivity_index: "Progressivity index",
    flagged: "Flagged reiterations",
    closures: "Pathways closed",
    corrections: "Corrections",
    spells_without_assessment: "Pathways without a multidisciplinary assessment",
    threshold_note: "threshold",
    transitions: "Transitions between stages",
    transitions_desc: "Stage entries in the period, by classification.",
    entry: "First entry",
    progression: "Progression",
    reiteration: "Reiteration",
    regression: "Regression",
    matrix: "Transition matrix",
    matrix_caption: "Entries in the period from the previous stage (rows) to the stage entered (columns).",
    from_to: "From \u{2193} / to \u{2192}",
    first_entry: "(first entry)",
    total: "Total",
    reiterations: "Reiterations and open stages",
    distribution: "Reiteration distribution",
    distribution_desc: "Beneficiaries by cumulative reiterations at the end of the period.",
    reiterations_bucket: "reiterations",
    beneficiaries: "beneficiaries",
    active_desc: "Beneficiaries with an open pathway at the end of the period, by open stage.",
    waiting: "Waiting (no open stage)",
    durations: "Time in stage and in pathway (days)",
    durations_caption: "Closed: ended in the period (exit \u{2212} entry). Open: still open at the end of the period (end \u{2212} entry).",
    closed: "Closed",
    open: "Open",
    count: "Count",
    mean: "Mean",
    median: "Median",
    p90: "90th pct.",
    pathway: "Pathway",
    stage: "Stage",
    outcome: "Outcome",
    closures_caption: "Pathways closed in the period, by outcome.",
    children: "Territories side by side",
    children_none: "The territory has no territories below it in the registry.",
    territory: "Territory",
    children_enrolments_desc: "Enrolments in the period by territory.",
    children_index_desc: "Progressivity index by territory (from \u{2212}1 to +1).",
    no_value: "n/a",
    series: "Monthly series",
    series_note: "The last months of the period (24 at most); each month is computed like the main document over that month.",
    month: "Month",
    entries_desc: "Stage entries per month, by classification; the line shows enrolments.",
    active_series_desc: "Beneficiaries active at the end of each month and beneficiaries flagged.",
    stage_entries: "Stage entries",
    audit: "Reiteration audit",
    audit_intro: "Beneficiaries flagged at the end of the period: stalled reiterations at or above the threshold. Pseudonymous ids only.",
    audit_none: "No beneficiary is flagged.",
    audit_more: "More flagged beneficiaries are not listed here: the full list is at GET /v1/audit/reiterations.",
    pseudonymous_id: "Pseudonymous id",
    stalled: "Stalled reiterations",
    total_reiterations: "Total reiterations",
    current_stage: "Current stage",
    occupability: "Occupability",
    last_transition: "Last transition",
    flagged_count: "Beneficiaries flagged",
    threshold: "Threshold",
    short: Short {
        enrolments: "Enrolled",
        active: "Active",
        entry: "First entry",
        progression: "Progr.",
        reiteration: "Reiter.",
        regression: "Regr.",
        index: "Index",
        flagged: "Flagged",
        closures: "Closed",
        stalled: "Stalled",
        total_reiterations: "Total",
    },
    methods: "Methods",
    methods_intro: "Every figure is computed from the recorded, immutable events with the rules below. Only non-voided events recorded by the \u{201c}as known at\u{201d} instant and effective by the end of the period count; each fact is attributed to the territory in force at the event that starts it. Durations are whole days.",
    definitions: &[
        ("Enrolments", "enrolment events dated in the period."),
        ("Reopenings", "pathways reopened in the period."),
        (
            "Transitions",
            "stage entries dated in the period, classified when recorded: first entry, progression (higher level), reiteration (same level), regression (lower level).",
        ),
        (
            "Progressivity index",
            "(progressions \u{2212} regressions) / (progressions + reiterations + regressions); undefined when the denominator is 0. Ranges from \u{2212}1 to +1.",
        ),
        (
            "Reiteration distribution",
            "beneficiaries in the territory at the end of the period who entered any stage, by cumulative reiterations (0, 1, 2, 3 or more).",
        ),
        (
            "Flagged reiterations",
            "among them, the beneficiaries whose stalled reiterations reach the threshold.",
        ),
        (
            "Active at end of period",
            "beneficiaries with an open pathway at the end of the period, by open stage or waiting.",
        ),
        (
            "Time in stage and in pathway",
            "count, mean, median and 90th percentile (linear interpolation) of the durations of pathways and stages ended in the period or open at its end.",
        ),
        (
            "Pathways closed",
            "closures dated in the period, by outcome.",
        ),
        (
            "Corrections",
            "undos recorded (UTC recording date) in the period.",
        ),
        (
            "Pathways without a multidisciplinary assessment",
            "pathways started in the period with no multidisciplinary assessment by the end of the period.",
        ),
    ],
    print_note: "To print it to PDF: chromium --headless --no-sandbox --disable-gpu --no-pdf-header-footer --print-to-pdf=report.pdf report.html",
};

/// A stage's label: the catalogue's (Italian) label, or the English name of the default
/// catalogue's stages in English.
pub fn stage_label(lang: ReportLang, code: &str, stage: Option<&Stage>) -> String {
    if lang == ReportLang::En {
        let english = match code {
            "socio_occupational" => Some("Socio-occupational"),
            "internship" => Some("Internship"),
            "job_placement" => Some("Job placement"),
            "training" => Some("Training"),
            _ => None,
        };
        if let Some(name) = english {
            return name.to_owned();
        }
    }
    stage.map_or_else(|| code.to_owned(), |s| s.label.clone())
}

/// The label of a closure outcome.
pub fn outcome_label(lang: ReportLang, outcome: CloseOutcome) -> &'static str {
    match (lang, outcome) {
        (ReportLang::It, CloseOutcome::Employed) => "Occupato",
        (ReportLang::It, CloseOutcome::DroppedOut) => "Abbandono",
        (ReportLang::It, CloseOutcome::MovedAway) => "Trasferito",
        (ReportLang::It, CloseOutcome::Deceased) => "Deceduto",
        (ReportLang::It, CloseOutcome::Other) => "Altro",
        (ReportLang::En, CloseOutcome::Employed) => "Employed",
        (ReportLang::En, CloseOutcome::DroppedOut) => "Dropped out",
        (ReportLang::En, CloseOutcome::MovedAway) => "Moved away",
        (ReportLang::En, CloseOutcome::Deceased) => "Deceased",
        (ReportLang::En, CloseOutcome::Other) => "Other",
    }
}

/// The label of an occupability level (`low`, `medium`, `high`).
pub fn occupability_label(lang: ReportLang, level: &str) -> &'static str {
    match (lang, level) {
        (ReportLang::It, "low") => "bassa",
        (ReportLang::It, "medium") => "media",
        (ReportLang::It, "high") => "alta",
        (ReportLang::En, "low") => "low",
        (ReportLang::En, "medium") => "medium",
        (ReportLang::En, "high") => "high",
        _ => "\u{2014}",
    }
}

/// A whole number with the language's thousands separator.
pub fn int(lang: ReportLang, value: u64) -> String {
    let digits = value.to_string();
    let separator = match lang {
        ReportLang::It => '.',
        ReportLang::En => ',',
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(digit);
    }
    out
}

/// A decimal number with `places` decimals, the language's decimal mark and thousands
/// separator, and a true minus sign.
pub fn dec(lang: ReportLang, value: f64, places: usize) -> String {
    let fixed = format!("{:.*}", places, value.abs());
    let (whole, fraction) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let whole = int(lang, whole.parse().unwrap_or(0));
    let mark = match lang {
        ReportLang::It => ",",
        ReportLang::En => ".",
    };
    let sign = if value < 0.0 && fixed.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "\u{2212}"
    } else {
        ""
    };
    match fraction {
        "" => format!("{sign}{whole}"),
        _ => format!("{sign}{whole}{mark}{fraction}"),
    }
}

/// An optional decimal; `—` when absent.
pub fn opt(lang: ReportLang, value: Option<f64>, places: usize) -> String {
    value.map_or_else(|| "\u{2014}".to_owned(), |v| dec(lang, v, places))
}

/// A day, `1 marzo 2025` or `1 March 2025`.
pub fn day(lang: ReportLang, date: NaiveDate) -> String {
    format!(
        "{} {} {}",
        date.day(),
        month_name(lang, date.month0()),
        date.year()
    )
}

/// A month, short: `mar 25` or `Mar 25`.
pub fn short_month(lang: ReportLang, date: NaiveDate) -> String {
    let name = month_name(lang, date.month0());
    let short: String = name.chars().take(3).collect();
    format!("{short} {:02}", date.year() % 100)
}

fn month_name(lang: ReportLang, month0: u32) -> &'static str {
    const IT: [&str; 12] = [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ];
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let names = match lang {
        ReportLang::It => &IT,
        ReportLang::En => &EN,
    };
    names[month0 as usize % 12]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_the_way_each_language_writes_them() {
        assert_eq!(int(ReportLang::It, 1_234_567), "1.234.567");
        assert_eq!(int(ReportLang::En, 1_234_567), "1,234,567");
        assert_eq!(int(ReportLang::En, 999), "999");
        assert_eq!(dec(ReportLang::It, 1234.56, 1), "1.234,6");
        assert_eq!(dec(ReportLang::En, -0.25, 2), "\u{2212}0.25");
        assert_eq!(dec(ReportLang::En, -0.001, 2), "0.00");
        assert_eq!(opt(ReportLang::It, None, 2), "\u{2014}");
    }
}
