//! `filiera export --format ocel2|xes`: the pathway events as the event logs process-mining
//! tools read (OCEL 2.0 JSON, IEEE 1849 XES), for the scope of a metrics query.
//!
//! Which events a query sees, their attribution, spell and classification come from the
//! domain ([`filiera_domain::metrics::event_log`], the fold's own reading of a timeline); this
//! module adds the global positions and writes the two formats. `docs/process-mining.md`
//! describes the mapping field by field.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};

use anyhow::Context as _;
use chrono::NaiveDate;
use filiera_domain::metrics::{Activity, LogScope, LoggedEvent, event_log};
use filiera_domain::{MetricsQuery, ProviderRegistry, StageCatalogue, Timeline};
use filiera_store::Store;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, Event};
use serde::Serialize;
use serde_json::Value;

/// The formats of `filiera export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One `GET /v1/events` item per line, every stored event (voided ones and undos too).
    Ndjson,
    /// OCEL 2.0 JSON: beneficiaries and providers as objects.
    Ocel2,
    /// IEEE 1849 XES: one trace per beneficiary.
    Xes,
}

/// Every stream of the store, digested for the logs.
pub struct Streams {
    streams: Vec<Stream>,
}

/// One beneficiary's timeline and the global position of each of its events.
struct Stream {
    timeline: Timeline,
    /// `(sequence, position)`, in sequence order.
    positions: Vec<(u64, i64)>,
}

/// One beneficiary's events in scope, in order.
struct Trace<'t> {
    beneficiary: &'t str,
    events: Vec<LogEvent<'t>>,
}

/// An event of a log with its global position.
struct LogEvent<'t> {
    position: i64,
    event: LoggedEvent<'t>,
}

impl Streams {
    /// Reads the whole feed of `store` in one scan.
    pub async fn load(store: &Store) -> anyhow::Result<Self> {
        let mut by_id: HashMap<uuid::Uuid, usize> = HashMap::new();
        let mut streams: Vec<Stream> = Vec::new();
        let mut scan = store.scan_feed(0, u64::MAX);
        while let Some(chunk) = scan.next_chunk().await {
            for stored in chunk? {
                let position = stored.position;
                let (beneficiary, recorded) = stored.into_recorded();
                let index = *by_id.entry(beneficiary).or_insert_with(|| {
                    streams.push(Stream {
                        timeline: Timeline::new(beneficiary.to_string()),
                        positions: Vec::new(),
                    });
                    streams.len() - 1
                });
                let stream = &mut streams[index];
                stream.positions.push((recorded.sequence, position));
                stream.timeline.apply(&recorded);
            }
        }
        Ok(Self { streams })
    }

    /// The traces of `query`, each beneficiary's events by `(on, position)`, the traces by
    /// their first event; beneficiaries without an event in scope are left out.
    fn traces(&self, query: &MetricsQuery, scope: &LogScope) -> Vec<Trace<'_>> {
        let mut traces: Vec<Trace<'_>> = self
            .streams
            .iter()
            .filter_map(|stream| {
                let mut events: Vec<LogEvent<'_>> = event_log(&stream.timeline, query, scope)
                    .into_iter()
                    .map(|event| LogEvent {
                        position: stream.position_of(event.sequence),
                        event,
                    })
                    .collect();
                events.sort_by_key(|e| (e.event.on, e.position));
                (!events.is_empty()).then(|| Trace {
                    beneficiary: stream.timeline.beneficiary_id(),
                    events,
                })
            })
            .collect();
        traces.sort_by_key(|t| t.events.first().map(|e| (e.event.on, e.position)));
        traces
    }
}

impl Stream {
    fn position_of(&self, sequence: u64) -> i64 {
        match self.positions.binary_search_by_key(&sequence, |p| p.0) {
            Ok(i) => self.positions[i].1,
            // Every applied event was read with its position.
            Err(_) => unreachable!("event {sequence} of a stream read without its position"),
        }
    }
}

/// A value of an event attribute.
#[derive(Clone, Copy)]
enum AttributeValue<'t> {
    Text(&'t str),
    Integer(i64),
}

/// An attribute name with its OCEL 2.0 type.
type AttributeDecl = (&'static str, &'static str);

/// The attributes every event carries.
const COMMON_ATTRIBUTES: [AttributeDecl; 4] = [
    ("event_type", "string"),
    ("territory", "string"),
    ("spell", "integer"),
    ("position", "integer"),
];

/// The event types other than stage entries, with their own attributes.
const EVENT_TYPES: [(&str, &[AttributeDecl]); 6] = [
    ("Enrolled", &[]),
    (
        "StageExited",
        &[
            ("stage", "string"),
            ("outcome", "string"),
            ("provider", "string"),
        ],
    ),
    ("TerritoryChanged", &[("to_territory", "string")]),
    ("PathwayClosed", &[("outcome", "string")]),
    ("PathwayReopened", &[]),
    (
        "NeedsAssessed",
        &[("kind", "string"), ("occupability", "string")],
    ),
];

/// The attributes of a stage entry (an event type per stage).
const STAGE_ENTRY_ATTRIBUTES: [AttributeDecl; 4] = [
    ("stage", "string"),
    ("from_stage", "string"),
    ("transition", "string"),
    ("provider", "string"),
];

impl<'t> LogEvent<'t> {
    /// The activity: the stage entered for a stage entry, the event type otherwise.
    fn activity(&self) -> &'t str {
        match self.event.activity {
            Activity::StageEntered {
                stage: Some(stage), ..
            } => stage.as_str(),
            activity => activity.event_type(),
        }
    }

    /// The provider the event relates to (a stage entry's, or the exited episode's).
    fn provider(&self) -> Option<&'t str> {
        match self.event.activity {
            Activity::StageEntered { provider, .. } | Activity::StageExited { provider, .. } => {
                provider
            }
            _ => None,
        }
    }

    /// The event's attributes: the common ones, then its type's; absent values left out.
    fn attributes(&self) -> Vec<(&'static str, AttributeValue<'t>)> {
        use AttributeValue::{Integer, Text};
        let event = &self.event;
        let mut attributes = vec![("event_type", Text(event.activity.event_type()))];
        if let Some(territory) = event.territory {
            attributes.push(("territory", Text(territory.as_str())));
        }
        attributes.push(("spell", Integer(i64::from(event.spell))));
        attributes.push(("position", Integer(self.position)));
        let mut text = |name, value: Option<&'t str>| {
            if let Some(value) = value {
                attributes.push((name, Text(value)));
            }
        };
        match event.activity {
            Activity::StageEntered {
                stage,
                from_stage,
                transition,
                provider,
            } => {
                text("stage", stage.map(|s| s.as_str()));
                text("from_stage", from_stage.map(|s| s.as_str()));
                text("transition", Some(transition.as_str()));
                text("provider", provider);
            }
            Activity::StageExited {
                stage,
                outcome,
                provider,
            } => {
                text("stage", stage.map(|s| s.as_str()));
                text("outcome", Some(outcome.as_str()));
                text("provider", provider);
            }
            Activity::TerritoryChanged { to } => text("to_territory", to.map(|t| t.as_str())),
            Activity::PathwayClosed { outcome } => text("outcome", Some(outcome.as_str())),
            Activity::NeedsAssessed { kind, occupability } => {
                text("kind", Some(kind.as_str()));
                text("occupability", Some(occupability.as_str()));
            }
            Activity::Enrolled | Activity::PathwayReopened => {}
        }
        attributes
    }
}

/// What the writers need besides the traces.
pub struct ExportContext<'a> {
    pub catalogue: &'a StageCatalogue,
    pub providers: &'a ProviderRegistry,
}

/// Writes the OCEL 2.0 JSON log of `query`. Returns how many events were written.
pub fn write_ocel2(
    streams: &Streams,
    query: &MetricsQuery,
    scope: &LogScope,
    context: &ExportContext<'_>,
    out: impl Write,
) -> anyhow::Result<usize> {
    let traces = streams.traces(query, scope);
    let mut events: Vec<(&str, &LogEvent<'_>)> = traces
        .iter()
        .flat_map(|t| t.events.iter().map(move |e| (t.beneficiary, e)))
        .collect();
    events.sort_by_key(|(_, e)| (e.event.on, e.position));

    // Event types: one per catalogue stage (then any other stage entered), then the others.
    let mut stages: Vec<&str> = context
        .catalogue
        .stages()
        .iter()
        .map(|s| s.code.as_str())
        .collect();
    let entered: BTreeSet<&str> = events
        .iter()
        .filter(|(_, e)| matches!(e.event.activity, Activity::StageEntered { .. }))
        .map(|(_, e)| e.activity())
        .collect();
    for stage in entered {
        if !stages.contains(&stage) {
            stages.push(stage);
        }
    }
    let declare = |name: &str, own: &[AttributeDecl]| OcelType {
        name: name.to_owned(),
        attributes: COMMON_ATTRIBUTES
            .iter()
            .chain(own)
            .map(|&(name, kind)| OcelAttributeDecl { name, kind })
            .collect(),
    };
    let mut event_types: Vec<OcelType> = stages
        .iter()
        .map(|stage| declare(stage, &STAGE_ENTRY_ATTRIBUTES))
        .collect();
    event_types.extend(EVENT_TYPES.iter().map(|(name, own)| declare(name, own)));

    let provider_ids: BTreeSet<&str> = events.iter().filter_map(|(_, e)| e.provider()).collect();
    let mut objects: Vec<OcelObject> = traces
        .iter()
        .map(|t| OcelObject {
            id: t.beneficiary.to_owned(),
            kind: BENEFICIARY,
            attributes: Vec::new(),
            relationships: Vec::new(),
        })
        .collect();
    objects.extend(provider_ids.iter().map(|&code| {
        let name = context.providers.get(code).map(|p| p.name.clone());
        OcelObject {
            id: provider_object_id(code),
            kind: PROVIDER,
            attributes: name
                .into_iter()
                .map(|name| OcelObjectAttribute {
                    name: "name",
                    // The OCEL 2.0 convention for a value that holds from the start.
                    time: "1970-01-01T00:00:00Z",
                    value: Value::String(name),
                })
                .collect(),
            relationships: Vec::new(),
        }
    }));

    let written = events.len();
    let events: Vec<OcelEvent> = events
        .into_iter()
        .map(|(beneficiary, e)| {
            let mut relationships = vec![OcelRelationship {
                object_id: beneficiary.to_owned(),
                qualifier: BENEFICIARY,
            }];
            if let Some(provider) = e.provider() {
                relationships.push(OcelRelationship {
                    object_id: provider_object_id(provider),
                    qualifier: PROVIDER,
                });
            }
            OcelEvent {
                id: e.position.to_string(),
                kind: e.activity().to_owned(),
                time: format!("{}T00:00:00Z", e.event.on),
                attributes: e
                    .attributes()
                    .into_iter()
                    .map(|(name, value)| OcelEventAttribute {
                        name,
                        value: match value {
                            AttributeValue::Text(text) => Value::from(text),
                            AttributeValue::Integer(n) => Value::from(n),
                        },
                    })
                    .collect(),
                relationships,
            }
        })
        .collect();
    let document = Ocel {
        object_types: vec![
            OcelType {
                name: BENEFICIARY.to_owned(),
                attributes: Vec::new(),
            },
            OcelType {
                name: PROVIDER.to_owned(),
                attributes: vec![OcelAttributeDecl {
                    name: "name",
                    kind: "string",
                }],
            },
        ],
        event_types,
        objects,
        events,
    };
    let mut out = io::BufWriter::new(out);
    serde_json::to_writer(&mut out, &document).context("cannot write the OCEL 2.0 log")?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(written)
}

const BENEFICIARY: &str = "beneficiary";
const PROVIDER: &str = "provider";

/// A provider's object id: its code, prefixed so it can never be taken for a beneficiary's.
fn provider_object_id(code: &str) -> String {
    format!("provider:{code}")
}

/// The OCEL 2.0 JSON document (the standard's `objectTypes`, `eventTypes`, `objects`,
/// `events`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ocel {
    object_types: Vec<OcelType>,
    event_types: Vec<OcelType>,
    objects: Vec<OcelObject>,
    events: Vec<OcelEvent>,
}

#[derive(Serialize)]
struct OcelType {
    name: String,
    attributes: Vec<OcelAttributeDecl>,
}

#[derive(Serialize)]
struct OcelAttributeDecl {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct OcelObject {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: Vec<OcelObjectAttribute>,
    relationships: Vec<OcelRelationship>,
}

#[derive(Serialize)]
struct OcelObjectAttribute {
    name: &'static str,
    time: &'static str,
    value: Value,
}

#[derive(Serialize)]
struct OcelEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    time: String,
    attributes: Vec<OcelEventAttribute>,
    relationships: Vec<OcelRelationship>,
}

#[derive(Serialize)]
struct OcelEventAttribute {
    name: &'static str,
    value: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OcelRelationship {
    object_id: String,
    qualifier: &'static str,
}

/// Writes the XES log of `query`. Returns how many events were written.
pub fn write_xes(
    streams: &Streams,
    query: &MetricsQuery,
    scope: &LogScope,
    out: impl Write,
) -> anyhow::Result<usize> {
    let traces = streams.traces(query, scope);
    let mut xml = Writer::new_with_indent(io::BufWriter::new(out), b' ', 2);
    xml.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut written = 0;
    xml.create_element("log")
        .with_attribute(("xes.version", "1849-2016"))
        .with_attribute(("xes.features", ""))
        .with_attribute(("xmlns", "http://www.xes-standard.org/"))
        .write_inner_content(|xml| {
            for (name, prefix) in [
                ("Concept", "concept"),
                ("Time", "time"),
                ("Lifecycle", "lifecycle"),
            ] {
                let uri = format!("http://www.xes-standard.org/{prefix}.xesext");
                xml.create_element("extension")
                    .with_attribute(("name", name))
                    .with_attribute(("prefix", prefix))
                    .with_attribute(("uri", uri.as_str()))
                    .write_empty()?;
            }
            // Every trace and every event carries these (defaults as the standard asks).
            xml.create_element("global")
                .with_attribute(("scope", "trace"))
                .write_inner_content(|xml| text(xml, "concept:name", "__INVALID__"))?;
            xml.create_element("global")
                .with_attribute(("scope", "event"))
                .write_inner_content(|xml| {
                    text(xml, "concept:name", "__INVALID__")?;
                    date(
                        xml,
                        "time:timestamp",
                        chrono::DateTime::UNIX_EPOCH.date_naive(),
                    )?;
                    text(xml, "lifecycle:transition", "complete")?;
                    text(xml, "event_type", "__INVALID__")?;
                    integer(xml, "spell", 0)?;
                    integer(xml, "position", 0)
                })?;
            xml.create_element("classifier")
                .with_attribute(("name", "Activity"))
                .with_attribute(("keys", "concept:name"))
                .write_empty()?;
            text(xml, "concept:name", "filiera pathways")?;
            for trace in &traces {
                xml.create_element("trace").write_inner_content(|xml| {
                    text(xml, "concept:name", trace.beneficiary)?;
                    for event in &trace.events {
                        written += 1;
                        xml.create_element("event")
                            .write_inner_content(|xml| xes_event(xml, event))?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
    let mut out = xml.into_inner();
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(written)
}

/// The attributes of one XES event.
fn xes_event<W: Write>(xml: &mut Writer<W>, event: &LogEvent<'_>) -> io::Result<()> {
    text(xml, "concept:name", event.activity())?;
    date(xml, "time:timestamp", event.event.on)?;
    let lifecycle = match event.event.activity {
        Activity::StageEntered { .. } => "start",
        _ => "complete",
    };
    text(xml, "lifecycle:transition", lifecycle)?;
    for (key, value) in event.attributes() {
        match value {
            AttributeValue::Text(value) => text(xml, key, value)?,
            AttributeValue::Integer(value) => integer(xml, key, value)?,
        }
    }
    Ok(())
}

fn text<W: Write>(xml: &mut Writer<W>, key: &str, value: &str) -> io::Result<()> {
    xml.create_element("string")
        .with_attribute(("key", key))
        .with_attribute(("value", value))
        .write_empty()?;
    Ok(())
}

fn integer<W: Write>(xml: &mut Writer<W>, key: &str, value: i64) -> io::Result<()> {
    xml.create_element("int")
        .with_attribute(("key", key))
        .with_attribute(("value", value.to_string().as_str()))
        .write_empty()?;
    Ok(())
}

/// A date as an XES `date` (xs:dateTime): midnight UTC of the day.
fn date<W: Write>(xml: &mut Writer<W>, key: &str, on: NaiveDate) -> io::Result<()> {
    xml.create_element("date")
        .with_attribute(("key", key))
        .with_attribute(("value", format!("{on}T00:00:00.000+00:00").as_str()))
        .write_empty()?;
    Ok(())
}
