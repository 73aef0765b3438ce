//! `benchmark`: local hashing, compression, encryption and verification speed, plus the TLS
//! upload speed to a server when a repository is given.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use pbs_cli::format::{format_and_print_result, ColumnConfig, TableOptions};
use pbs_cli::{Command, CommandTree, OutputFormat, Param, ParsedArgs};
use pbs_datastore::{CryptConfig, DataBlob, DataChunkBuilder, KeyConfig};

/// One measured (or untested) speed and its reference value, both in bytes per second.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Speed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    pub top: f64,
}

impl Speed {
    fn untested(top: f64) -> Self {
        Self { speed: None, top }
    }

    /// The text-table cell: `<MB/s> MB/s (<percent of top>%)` or `not tested`.
    pub fn render(&self) -> String {
        match self.speed {
            Some(speed) => format!(
                "{:.2} MB/s ({:.0}%)",
                speed / 1_000_000.0,
                speed * 100.0 / self.top
            ),
            None => "not tested".to_string(),
        }
    }
}

/// All measurements; field order is the JSON order.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BenchmarkResult {
    pub tls: Speed,
    pub sha256: Speed,
    pub compress: Speed,
    pub decompress: Speed,
    pub aes256_gcm: Speed,
    pub verify: Speed,
}

impl Default for BenchmarkResult {
    /// Nothing tested; reference values measured on an AMD Ryzen 7 2700X.
    fn default() -> Self {
        Self {
            tls: Speed::untested(1_235_000_000.0),
            sha256: Speed::untested(2_022_000_000.0),
            compress: Speed::untested(752_000_000.0),
            decompress: Speed::untested(1_198_000_000.0),
            aes256_gcm: Speed::untested(3_645_000_000.0),
            verify: Speed::untested(758_000_000.0),
        }
    }
}

/// Text rows: result field and label, in display order.
const TEXT_ROWS: [(&str, &str); 6] = [
    ("tls", "TLS (maximal backup upload speed)"),
    ("sha256", "SHA256 checksum computation speed"),
    ("compress", "ZStd level 1 compression speed"),
    ("decompress", "ZStd level 1 decompression speed"),
    ("verify", "Chunk verification speed"),
    ("aes256_gcm", "AES256 GCM encryption speed"),
];

impl BenchmarkResult {
    fn field(&self, name: &str) -> Option<&Speed> {
        Some(match name {
            "tls" => &self.tls,
            "sha256" => &self.sha256,
            "compress" => &self.compress,
            "decompress" => &self.decompress,
            "aes256_gcm" => &self.aes256_gcm,
            "verify" => &self.verify,
            _ => return None,
        })
    }

    /// The object shown as Name/Value table in text mode, and its column configuration.
    pub fn text_table(&self) -> (Value, TableOptions) {
        let mut data = serde_json::Map::new();
        let mut options = TableOptions::new();
        for (name, label) in TEXT_ROWS {
            if let Some(speed) = self.field(name) {
                data.insert(name.to_string(), json!(speed.render()));
                options = options.column(ColumnConfig::new(name).header(label));
            }
        }
        (Value::Object(data), options)
    }
}

/// Size of the buffer the local tests work on.
const BUFFER_SIZE: usize = 1024 * 1024;

/// 1 MiB of test data: the little-endian bytes of 0, 1, 2, ...
pub fn test_buffer() -> Vec<u8> {
    let mut data = Vec::with_capacity(BUFFER_SIZE);
    for i in 0..(BUFFER_SIZE / 4) as u32 {
        data.extend_from_slice(&i.to_le_bytes());
    }
    data
}

/// Repeats `op` (which returns the bytes it processed) until more than `duration` passed;
/// returns bytes per second.
fn measure(duration: Duration, mut op: impl FnMut() -> Result<usize>) -> Result<f64> {
    let start = Instant::now();
    let mut bytes = 0usize;
    loop {
        bytes += op()?;
        if start.elapsed() > duration {
            break;
        }
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64())
}

fn log_speed(label: &str, speed: f64) {
    eprintln!("{label} speed: {:.2} MB/s", speed / 1_000_000.0);
}

/// Runs the local measurements (SHA-256, zstd, AES-256-GCM, chunk verification).
pub fn run_local_benchmarks(result: &mut BenchmarkResult) -> Result<()> {
    let data = test_buffer();

    let speed = measure(Duration::from_secs(1), || {
        std::hint::black_box(openssl::sha::sha256(&data));
        Ok(data.len())
    })?;
    log_speed("SHA256", speed);
    result.sha256.speed = Some(speed);

    let speed = measure(Duration::from_secs(3), || {
        let compressed = zstd::bulk::compress(&data, 1).context("zstd compression failed")?;
        std::hint::black_box(compressed);
        Ok(data.len())
    })?;
    log_speed("Compression", speed);
    result.compress.speed = Some(speed);

    let compressed = zstd::bulk::compress(&data, 1).context("zstd compression failed")?;
    let speed = measure(Duration::from_secs(1), || {
        let decompressed = zstd::bulk::decompress(&compressed, BUFFER_SIZE)
            .context("zstd decompression failed")?;
        Ok(decompressed.len())
    })?;
    log_speed("Decompress", speed);
    result.decompress.speed = Some(speed);

    let mut key = [0u8; 32];
    openssl::pkcs5::scrypt(b"test", b"", 65536, 8, 1, 1025 * 1024 * 1024, &mut key)
        .context("scrypt key derivation failed")?;
    let config = CryptConfig::new(key)?;
    let speed = measure(Duration::from_secs(1), || {
        std::hint::black_box(DataBlob::encode(&data, Some(&config), false)?);
        Ok(data.len())
    })?;
    log_speed("AES256/GCM", speed);
    result.aes256_gcm.speed = Some(speed);

    let (chunk, digest) = DataChunkBuilder::new(&data).compress(true).build()?;
    let speed = measure(Duration::from_secs(1), || {
        chunk.verify_unencrypted(data.len(), &digest)?;
        Ok(data.len())
    })?;
    log_speed("Verify", speed);
    result.verify.speed = Some(speed);
    Ok(())
}

/// The `benchmark` command.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    let mut params = pbs_client::tools::repository_params();
    params.extend([
        Param::optional(
            "keyfile",
            "Path to encryption key. All data will be encrypted using this key.",
        ),
        Param::optional("output-format", "Output format: text, json or json-pretty."),
    ]);
    vec![(
        "benchmark",
        CommandTree::Leaf(Command {
            description: "Run benchmark tests",
            params,
            positionals: vec![],
        }),
    )]
}

/// Runs `benchmark`.
pub async fn run(_path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    let format = OutputFormat::from_args(args)?;
    let crypt_config = match args.get("keyfile") {
        Some(path) => {
            let key = KeyConfig::load(path)?;
            let (raw_key, _created, _fingerprint) =
                key.decrypt(&crate::key::encryption_key_password)?;
            Some(CryptConfig::new(raw_key)?)
        }
        None => None,
    };
    let mut result = BenchmarkResult::default();
    if args.get("repository").is_some() || std::env::var_os("PBS_REPOSITORY").is_some() {
        tls::run_tls_benchmark(args, crypt_config.as_ref(), &mut result).await?;
    }
    tokio::task::block_in_place(|| run_local_benchmarks(&mut result))?;
    print_result(&result, format)?;
    Ok(None)
}

fn print_result(result: &BenchmarkResult, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(result)?),
        OutputFormat::JsonPretty => println!("{}", serde_json::to_string_pretty(result)?),
        OutputFormat::Text => {
            let (data, options) = result.text_table();
            format_and_print_result(&data, format, &options)?;
        }
    }
    Ok(())
}

mod tls {
    use std::sync::Arc;

    use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace, BackupType};
    use pbs_client::backup_writer::BackupWriter;
    use pbs_client::tools::{connect, extract_repository, record_repository};

    use super::*;

    /// Measures the TLS upload speed to the repository's server: a benchmark backup session
    /// of `host/benchmark/<now>` and pipelined 4 MiB speedtest uploads for 5 seconds.
    pub(super) async fn run_tls_benchmark(
        args: &ParsedArgs,
        crypt_config: Option<&CryptConfig>,
        result: &mut BenchmarkResult,
    ) -> Result<()> {
        let repo = extract_repository(args)?;
        let client = connect(&repo)?;
        record_repository(&repo);
        let group = BackupGroup::new(BackupType::Host, "benchmark")?;
        let snapshot = BackupDir::new(group, pbs_api_types::time::epoch_now())?;
        let crypt_config = crypt_config.map(|config| Arc::new(config.clone()));
        let writer = BackupWriter::start(
            &client,
            crypt_config,
            repo.store(),
            &BackupNamespace::root(),
            &snapshot,
            false,
            true,
        )
        .await?;
        let speed = writer.speedtest().await;
        writer.cancel();
        let speed = speed?;
        for line in speed.log_lines() {
            eprintln!("{line}");
        }
        result.tls.speed = Some(speed.speed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_pattern() {
        let data = test_buffer();
        assert_eq!(data.len(), 1024 * 1024);
        assert_eq!(&data[..8], &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&data[data.len() - 4..], &0x3ffffu32.to_le_bytes());
    }

    #[test]
    fn rendering_and_json_shape() {
        let mut result = BenchmarkResult::default();
        result.sha256.speed = Some(2_066_730_000.0);
        result.compress.speed = Some(775_110_000.0);
        assert_eq!(result.sha256.render(), "2066.73 MB/s (102%)");
        assert_eq!(result.compress.render(), "775.11 MB/s (103%)");
        assert_eq!(result.tls.render(), "not tested");
        let text = serde_json::to_string(&result).unwrap();
        assert!(text.starts_with(r#"{"tls":{"top":1235000000.0},"sha256":{"speed":2066730000.0,"top":2022000000.0},"compress""#), "{text}");
        let (data, options) = result.text_table();
        let rendered = pbs_cli::format::render_text(&data, &options.noborder(false)).unwrap();
        let labels: Vec<&str> = rendered
            .lines()
            .filter_map(|line| line.strip_prefix("│ "))
            .map(|line| line.split(" │").next().unwrap_or_default().trim_end())
            .collect();
        assert_eq!(
            labels,
            [
                "Name",
                "TLS (maximal backup upload speed)",
                "SHA256 checksum computation speed",
                "ZStd level 1 compression speed",
                "ZStd level 1 decompression speed",
                "Chunk verification speed",
                "AES256 GCM encryption speed"
            ]
        );
    }
}
