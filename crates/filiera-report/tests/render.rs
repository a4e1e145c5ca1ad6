//! The page as a pure function: the same inputs give the same bytes, text from the
//! configuration is escaped, and an empty store still gives a complete page.

use filiera_contract::ReportLang;
use filiera_domain::{
    MetricsQuery, StageCatalogue, TerritoryDef, TerritoryRegistry, Timeline, regional_documents,
};
use filiera_report::{DataAsOf, RegionalReport, render_regional};

fn registry() -> TerritoryRegistry {
    let def = |code: &str, name: &str, parent: Option<&str>| TerritoryDef {
        code: code.into(),
        name: name.into(),
        parent: parent.map(Into::into),
    };
    TerritoryRegistry::new(vec![
        def("R", "Region <script>alert(1)</script>", None),
        def("R-A", "Ambito \"A\" & co", Some("R")),
    ])
    .unwrap()
}

fn render(lang: ReportLang) -> String {
    let registry = registry();
    let catalogue = StageCatalogue::default_catalogue();
    let query = MetricsQuery {
        territory: registry.get("R"),
        from: "2024-01-01".parse().unwrap(),
        to: "2024-03-31".parse().unwrap(),
        known_at: "2024-04-01T00:00:00Z".parse().unwrap(),
        threshold: 2,
    };
    let documents = regional_documents(
        std::iter::empty::<&Timeline>(),
        &query,
        &catalogue,
        &registry,
    );
    render_regional(&RegionalReport {
        documents: &documents,
        data_as_of: DataAsOf {
            position: 0,
            recorded_at: None,
        },
        catalogue: &catalogue,
        registry: &registry,
        lang,
    })
}

#[test]
fn configured_names_are_escaped() {
    let page = render(ReportLang::En);
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("Region &lt;script&gt;alert(1)&lt;/script&gt; (R)"));
    assert!(page.contains("Ambito &quot;A&quot; &amp; co"));
}

#[test]
fn an_empty_store_gives_a_complete_page_the_same_every_time() {
    for lang in [ReportLang::It, ReportLang::En] {
        let page = render(lang);
        assert_eq!(page, render(lang));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>"));
        assert!(page.contains("@page { size: A4;"));
        // No index without transitions: shown as a dash, not as 0.
        assert!(page.contains("data-metric=\"progressivity_index\">\u{2014}<"));
        // Three months of series, one child.
        assert_eq!(page.matches("data-metric=\"series.").count(), 3 * 8);
        assert!(page.contains("data-metric=\"breakdown.R-A.enrolments\">0<"));
    }
    assert!(render(ReportLang::It).contains("nessun evento registrato"));
    assert!(render(ReportLang::En).contains("no event recorded"));
}
