//! The index schema.

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions, NumericOptions,
    Schema, TextFieldIndexing, FAST, INDEXED, STORED, STRING, TEXT,
};

/// Handles to every field of the schema.
#[derive(Clone, Copy)]
pub struct Fields {
    /// Event time, microseconds: fast (range queries, sorting, histograms,
    /// retention all read the column), stored. Not in the inverted index:
    /// its terms would only cost indexing time.
    pub ts: Field,
    /// Exact-match filters (`host:web01`, `log:nginx`,
    /// `path:"/var/log/nginx/api.log"`: the file a line was read from,
    /// which tells the files of a pattern apart).
    pub host: Field,
    pub log: Field,
    pub path: Field,
    pub file_id: Field,
    /// First line's offset: fast (exact ranges for upserts, context lines
    /// are the neighbours by offset), stored. With host, log and file_id it
    /// is the durable name.
    pub offset: Field,
    /// `offset >> OFFSET_BLOCK_BITS`, indexed: a term per 64 KiB of a file
    /// instead of a term per line, so an upsert finds a run's neighbourhood
    /// in the inverted index without making every offset a term.
    pub offset_block: Field,
    /// Where the event ends (stored only).
    pub end_offset: Field,
    /// Full-text, default tokenizer, with positions (phrases).
    pub body: Field,
    /// Parsed fields as one JSON object: `fields.status:500`.
    pub fields: Field,
    /// `parse_error:true` finds lines the parser could not read (only set
    /// when true: one posting per broken line, none per good one).
    pub parse_error: Field,
    /// The index's committed opstamp when the event was added: every event
    /// with a number below the last commit's opstamp is committed, so a
    /// reader finds what was committed since it last looked (rules). Fast
    /// only. `None` in an index made before it (rules need a new index).
    pub commit: Option<Field>,
    /// The collector that first read the event (`collector:us-1`), exact.
    /// `None` in an index made before it.
    pub collector: Option<Field>,
    /// In a cluster: the tenure during which this collector indexed the
    /// event (the etcd revision at which it took the host; 0 outside a
    /// cluster). Of two members' copies of a line, the later tenure's is
    /// kept (docs/cluster.md). Fast only (no terms: its queries are rare
    /// and read the column). `None` in an index made before it.
    pub tenure: Option<Field>,
}

/// Offsets per `offset_block` term: 64 KiB.
pub const OFFSET_BLOCK_BITS: u32 = 16;

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let ts_opts = DateOptions::default()
        .set_stored()
        .set_fast()
        .set_precision(DateTimePrecision::Microseconds);
    let json_opts = JsonObjectOptions::default()
        .set_stored()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
    let fields = Fields {
        ts: b.add_date_field("ts", ts_opts),
        host: b.add_text_field("host", STRING | STORED | FAST),
        log: b.add_text_field("log", STRING | STORED | FAST),
        path: b.add_text_field("path", STRING | STORED),
        file_id: b.add_text_field("file_id", STRING | STORED),
        offset: b.add_u64_field("offset", STORED | FAST),
        offset_block: b.add_u64_field("offset_block", INDEXED),
        end_offset: b.add_u64_field("end_offset", STORED),
        body: b.add_text_field("body", TEXT | STORED),
        fields: b.add_json_field("fields", json_opts),
        parse_error: b.add_bool_field(
            "parse_error",
            NumericOptions::default().set_indexed().set_stored(),
        ),
        commit: Some(b.add_u64_field("commit", FAST)),
        collector: Some(b.add_text_field("collector", STRING | STORED)),
        tenure: Some(b.add_u64_field("tenure", FAST)),
    };
    (b.build(), fields)
}

/// The fields of an opened index, looked up by name; the first missing one
/// is returned as the error (an index made by an older rill).
pub fn fields_of(schema: &Schema) -> Result<Fields, String> {
    let f = |name: &str| schema.get_field(name).map_err(|_| name.to_owned());
    Ok(Fields {
        ts: f("ts")?,
        host: f("host")?,
        log: f("log")?,
        path: f("path")?,
        file_id: f("file_id")?,
        offset: f("offset")?,
        offset_block: f("offset_block")?,
        end_offset: f("end_offset")?,
        body: f("body")?,
        fields: f("fields")?,
        parse_error: f("parse_error")?,
        commit: schema.get_field("commit").ok(),
        collector: schema.get_field("collector").ok(),
        tenure: schema.get_field("tenure").ok(),
    })
}
