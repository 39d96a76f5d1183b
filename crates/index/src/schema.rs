//! The index schema.

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, Schema, FAST, INDEXED, STORED, STRING, TEXT,
};

/// Handles to every field of the schema.
#[derive(Clone, Copy)]
pub struct Fields {
    /// Event time: indexed (range queries), fast (sorting), stored.
    pub ts: Field,
    /// Exact-match filters.
    pub host: Field,
    pub log: Field,
    pub path: Field,
    pub file_id: Field,
    pub offset: Field,
    /// Full-text, default tokenizer.
    pub body: Field,
    /// The durable name; what re-adds are deduplicated on.
    pub key: Field,
}

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let ts_opts = DateOptions::default()
        .set_indexed()
        .set_stored()
        .set_fast()
        .set_precision(DateTimePrecision::Microseconds);
    let fields = Fields {
        ts: b.add_date_field("ts", ts_opts),
        host: b.add_text_field("host", STRING | STORED | FAST),
        log: b.add_text_field("log", STRING | STORED | FAST),
        path: b.add_text_field("path", STORED),
        file_id: b.add_text_field("file_id", STRING | STORED),
        offset: b.add_u64_field("offset", INDEXED | STORED | FAST),
        body: b.add_text_field("body", TEXT | STORED),
        key: b.add_text_field("key", STRING),
    };
    (b.build(), fields)
}

/// The fields of an opened index, looked up by name.
pub fn fields_of(schema: &Schema) -> tantivy::Result<Fields> {
    let f = |name: &str| schema.get_field(name);
    Ok(Fields {
        ts: f("ts")?,
        host: f("host")?,
        log: f("log")?,
        path: f("path")?,
        file_id: f("file_id")?,
        offset: f("offset")?,
        body: f("body")?,
        key: f("key")?,
    })
}
