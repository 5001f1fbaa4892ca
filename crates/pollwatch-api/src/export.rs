//! Exports in constant memory: every revision of the audit trail as JSON lines or CSV, and every
//! station's counted result as CSV. The API streams them; `pollwatch export` writes them to a
//! file with the same encoders.

use futures_util::StreamExt as _;
use pollwatch_model::Mission;
use pollwatch_store::{AuditRecord, StationResult, Store, StoreError};
use serde::Serialize;

/// Rows encoded into one chunk of the response (a few hundred KiB at most).
pub const ROWS_PER_CHUNK: usize = 256;

/// A piece of an export: its bytes and the rows they hold (0 for the header).
#[derive(Debug)]
pub struct Chunk {
    pub rows: u64,
    pub bytes: Vec<u8>,
}

/// What an export is of, and in which format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    ReportsJsonl,
    /// The audit chain ([`pollwatch_store::AuditEntry`] per line).
    AuditJsonl,
    ReportsCsv,
    ResultsCsv,
}

impl Export {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::ReportsJsonl | Self::AuditJsonl => "application/jsonl; charset=utf-8",
            Self::ReportsCsv | Self::ResultsCsv => "text/csv; charset=utf-8",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Self::ReportsJsonl => "reports.jsonl",
            Self::AuditJsonl => "audit.jsonl",
            Self::ReportsCsv => "reports.csv",
            Self::ResultsCsv => "results.csv",
        }
    }
}

/// One revision as a JSON line: the audit fields, then the payload as received (a string).
#[derive(Serialize)]
struct RevisionLine<'a> {
    seq: i64,
    report_id: &'a str,
    revision: i64,
    content_hash: &'a str,
    sender: Option<&'a str>,
    channel: &'a str,
    received_at: String,
    redelivered: bool,
    flags: &'a serde_json::Value,
    payload: &'a str,
    /// The position of this revision's entry in the audit chain (`audit.jsonl`), and its hash.
    audit_position: Option<i64>,
    audit_hash: Option<&'a str>,
    /// 0 for the version received first; 1, 2, … for versions kept aside that a reviewer
    /// picked to count (the report's current version is in `GET /api/v1/reports/{id}`).
    variant: i64,
}

impl<'a> RevisionLine<'a> {
    fn of(record: &'a AuditRecord) -> Self {
        Self {
            seq: record.seq,
            report_id: &record.report_id,
            revision: record.revision,
            content_hash: &record.content_hash,
            sender: record.sender.as_deref(),
            channel: &record.channel,
            received_at: record.received_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            redelivered: record.redelivered,
            flags: &record.flags,
            payload: &record.payload,
            audit_position: record.audit.as_ref().map(|(position, _)| *position),
            audit_hash: record.audit.as_ref().map(|(_, hash)| hash.as_str()),
            variant: record.variant,
        }
    }
}

/// The CSV header of the reports export.
pub const REPORTS_CSV_HEADER: &[&str] = &[
    "seq",
    "report_id",
    "revision",
    "content_hash",
    "sender",
    "channel",
    "received_at",
    "redelivered",
    "flags",
    "payload",
    "audit_position",
    "audit_hash",
    "variant",
];

/// Appends one revision to `out` in `format` (a reports export).
pub fn encode_revision(format: Export, record: &AuditRecord, out: &mut Vec<u8>) {
    let line = RevisionLine::of(record);
    match format {
        Export::ReportsJsonl => {
            serde_json::to_writer(&mut *out, &line).expect("a revision serialises");
            out.push(b'\n');
        }
        Export::ReportsCsv | Export::ResultsCsv | Export::AuditJsonl => {
            let flags = record.flags.to_string();
            let fields = [
                line.seq.to_string(),
                line.report_id.to_owned(),
                line.revision.to_string(),
                line.content_hash.to_owned(),
                line.sender.unwrap_or("").to_owned(),
                line.channel.to_owned(),
                line.received_at,
                line.redelivered.to_string(),
                flags,
                line.payload.to_owned(),
                line.audit_position.map(|p| p.to_string()).unwrap_or_default(),
                line.audit_hash.unwrap_or("").to_owned(),
                line.variant.to_string(),
            ];
            csv_row(&fields, out);
        }
    }
}

/// The CSV header of the results export: fixed columns, then the votes as `code=n;…`.
pub const RESULTS_CSV_HEADER: &[&str] = &[
    "contest",
    "station",
    "region",
    "report_id",
    "observer",
    "observed_at",
    "registered_voters",
    "ballots_in_box",
    "invalid",
    "valid",
    "votes",
];

/// Appends one station's result for `contest` to `out`; the votes in ballot order.
pub fn encode_station_result(mission: &Mission, contest: &str, result: &StationResult, out: &mut Vec<u8>) {
    let mut fields = vec![contest.to_owned(), result.station.clone(), result.region.clone()];
    match &result.counted {
        None => fields.extend(std::iter::repeat_n(String::new(), 8)),
        Some(counted) => {
            let votes = mission
                .contest(contest)
                .map(|c| {
                    c.choices
                        .iter()
                        .map(|choice| {
                            let n = counted
                                .votes
                                .iter()
                                .find(|(code, _)| *code == choice.code)
                                .map_or(0, |(_, n)| *n);
                            format!("{}={n}", choice.code)
                        })
                        .collect::<Vec<_>>()
                        .join(";")
                })
                .unwrap_or_default();
            fields.extend([
                counted.report_id.clone(),
                counted.observer.clone(),
                counted.observed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                counted.registered_voters.to_string(),
                counted.ballots_in_box.to_string(),
                counted.invalid.to_string(),
                counted.votes.iter().map(|(_, n)| n).sum::<i64>().to_string(),
                votes,
            ]);
        }
    }
    csv_row(&fields, out);
}

/// Appends the CSV header of `format` to `out`.
pub fn encode_header(format: Export, out: &mut Vec<u8>) {
    match format {
        Export::ReportsJsonl | Export::AuditJsonl => {}
        Export::ReportsCsv => csv_row(REPORTS_CSV_HEADER, out),
        Export::ResultsCsv => csv_row(RESULTS_CSV_HEADER, out),
    }
}

fn csv_row<S: AsRef<[u8]>>(fields: &[S], out: &mut Vec<u8>) {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(out);
    writer.write_record(fields).expect("writing CSV to memory");
    writer.flush().expect("writing CSV to memory");
}

/// Runs the export of `format` and sends it to `chunks` a chunk at a time (the header first),
/// waiting while the channel is full, so that the export holds only what the channel does.
/// Stops at the first store error or when the receiver is gone. Returns the rows sent.
pub async fn run(
    store: &Store,
    mission: &Mission,
    format: Export,
    chunks: tokio::sync::mpsc::Sender<Chunk>,
) -> Result<u64, StoreError> {
    let mut header = Vec::new();
    encode_header(format, &mut header);
    if !header.is_empty() && chunks.send(Chunk { rows: 0, bytes: header }).await.is_err() {
        return Ok(0);
    }
    let mut rows = 0;
    match format {
        Export::ReportsJsonl | Export::ReportsCsv => {
            let mut records = std::pin::pin!(store.export().ready_chunks(ROWS_PER_CHUNK));
            while let Some(chunk) = records.next().await {
                let mut out = Vec::with_capacity(64 * 1024);
                let in_chunk = chunk.len() as u64;
                for record in chunk {
                    encode_revision(format, &record?, &mut out);
                }
                rows += in_chunk;
                if chunks.send(Chunk { rows: in_chunk, bytes: out }).await.is_err() {
                    return Ok(rows);
                }
            }
        }
        Export::AuditJsonl => {
            let mut entries = std::pin::pin!(store.audit_entries().ready_chunks(ROWS_PER_CHUNK));
            while let Some(chunk) = entries.next().await {
                let mut out = Vec::with_capacity(64 * 1024);
                let in_chunk = chunk.len() as u64;
                for entry in chunk {
                    serde_json::to_writer(&mut out, &entry?).expect("an entry serialises");
                    out.push(b'\n');
                }
                rows += in_chunk;
                if chunks.send(Chunk { rows: in_chunk, bytes: out }).await.is_err() {
                    return Ok(rows);
                }
            }
        }
        Export::ResultsCsv => {
            for contest in &mission.contests {
                let results = store.station_results(&mission.id, &contest.id).await?;
                for chunk in results.chunks(ROWS_PER_CHUNK) {
                    let mut out = Vec::new();
                    for result in chunk {
                        encode_station_result(mission, &contest.id, result, &mut out);
                    }
                    rows += chunk.len() as u64;
                    if chunks.send(Chunk { rows: chunk.len() as u64, bytes: out }).await.is_err() {
                        return Ok(rows);
                    }
                }
            }
        }
    }
    Ok(rows)
}
