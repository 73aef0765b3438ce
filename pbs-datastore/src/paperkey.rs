//! Paper keys: printable text or HTML of a key file or master private key, with QR codes.
//!
//! QR codes come from the `qrencode` program, as upstream does.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, format_err, Context, Error};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::key_config::KeyConfig;

/// First line of the key block of a key-file paper key.
pub const BEGIN_MARKER: &str = "-----BEGIN PROXMOX BACKUP KEY-----";
/// Last line of the key block of a key-file paper key.
pub const END_MARKER: &str = "-----END PROXMOX BACKUP KEY-----";

const PEM_KINDS: [&str; 2] = ["ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY"];
/// A PEM private key shorter than this is not a real key.
const MIN_PEM_LINES: usize = 20;
/// PEM lines per numbered block in the text output.
const TEXT_BLOCK_LINES: usize = 5;
/// PEM lines per numbered block in the HTML output.
const HTML_BLOCK_LINES: usize = 20;
const FORM_FEED: char = '\x0c';

/// Output format of a paper key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaperkeyFormat {
    /// Printable HTML page with SVG QR codes.
    #[default]
    Html,
    /// Plain text with UTF-8 block QR codes.
    Text,
}

/// The key material to print, split into lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaperKeyContent {
    /// A key file, as pretty JSON lines.
    KeyFile(Vec<String>),
    /// A PEM master private key, as its non-empty lines.
    PrivateKey(Vec<String>),
}

impl PaperKeyContent {
    /// Classifies and validates the input: a PEM private key or a key file's JSON.
    pub fn parse(data: &str) -> Result<Self, Error> {
        let pem_kind = PEM_KINDS
            .iter()
            .find(|kind| data.starts_with(&format!("-----BEGIN {kind}-----\n")));
        if let Some(kind) = pem_kind {
            let lines: Vec<String> = data
                .lines()
                .map(str::trim_end)
                .filter(|line| !line.is_empty())
                .map(String::from)
                .collect();
            let end = format!("-----END {kind}-----");
            if lines.last().map(String::as_str) != Some(end.as_str()) {
                bail!("unexpected key format - private key does not end with '{end}'");
            }
            if lines.len() < MIN_PEM_LINES {
                bail!(
                    "unexpected key format - private key has only {} lines",
                    lines.len()
                );
            }
            return Ok(Self::PrivateKey(lines));
        }
        let key = KeyConfig::from_json(data)
            .context("unable to parse paper key input as key file or PEM private key")?;
        let pretty = serde_json::to_string_pretty(&key)?;
        Ok(Self::KeyFile(pretty.lines().map(String::from).collect()))
    }
}

/// Writes a paper key for `data` (key file JSON or PEM private key) to `output`.
pub fn generate_paper_key<W: Write>(
    output: W,
    data: &str,
    subject: Option<String>,
    output_format: PaperkeyFormat,
) -> Result<(), Error> {
    let content = PaperKeyContent::parse(data)?;
    match output_format {
        PaperkeyFormat::Text => render_text(output, &content, subject.as_deref(), &mut |input| {
            qrencode("utf8i", input)
        }),
        PaperkeyFormat::Html => render_html(output, &content, subject.as_deref(), &mut |input| {
            qrencode("svg", input)
        }),
    }
}

/// Runs `qrencode -t <kind> -m0 -s1 -lm --output -` on `input`.
pub fn qrencode(kind: &str, input: &str) -> Result<Vec<u8>, Error> {
    let mut child = Command::new("qrencode")
        .args(["-t", kind, "-m0", "-s1", "-lm", "--output", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            format_err!("unable to run 'qrencode' (install the Debian package 'qrencode') - {err}")
        })?;
    // qrencode reads all input before writing anything, so writing first cannot deadlock.
    let write_result = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(input.as_bytes()),
        None => Ok(()),
    };
    let output = child
        .wait_with_output()
        .context("failed to wait for 'qrencode'")?;
    if !output.status.success() {
        bail!(
            "'qrencode' failed ({}) - {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    write_result.context("unable to pass data to 'qrencode'")?;
    Ok(output.stdout)
}

/// Renders the text paper key; `qr` turns the encoded text into a printable QR code.
pub fn render_text<W: Write>(
    mut output: W,
    content: &PaperKeyContent,
    subject: Option<&str>,
    qr: &mut dyn FnMut(&str) -> Result<Vec<u8>, Error>,
) -> Result<(), Error> {
    if let Some(subject) = subject {
        writeln!(output, "Subject: {subject}\n")?;
    }
    match content {
        PaperKeyContent::PrivateKey(lines) => {
            for (block_nr, block) in lines.chunks(TEXT_BLOCK_LINES).enumerate() {
                for (i, line) in block.iter().enumerate() {
                    writeln!(output, "{:2}: {line}", block_nr * TEXT_BLOCK_LINES + i)?;
                }
                let code = qr_text(qr, &block.join("\n"))?;
                writeln!(output, "{code}")?;
                writeln!(output, "{FORM_FEED}")?;
            }
        }
        PaperKeyContent::KeyFile(lines) => {
            writeln!(output, "{BEGIN_MARKER}")?;
            for line in lines {
                writeln!(output, "{line}")?;
            }
            writeln!(output, "{END_MARKER}")?;
            let code = qr_text(qr, &lines.join("\n"))?;
            writeln!(output, "{code}")?;
        }
    }
    output.flush()?;
    Ok(())
}

fn qr_text(
    qr: &mut dyn FnMut(&str) -> Result<Vec<u8>, Error>,
    input: &str,
) -> Result<String, Error> {
    String::from_utf8(qr(input)?).map_err(|_| format_err!("QR code output is not valid UTF-8"))
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn qr_img(
    qr: &mut dyn FnMut(&str) -> Result<Vec<u8>, Error>,
    input: &str,
) -> Result<String, Error> {
    let svg = qr(input)?;
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(svg);
    Ok(format!(
        "<center><img width=\"500pt\" height=\"500pt\" src=\"data:image/svg+xml;base64,{encoded}\"/></center>"
    ))
}

/// Renders the HTML paper key; `qr` turns the encoded text into an SVG QR code.
pub fn render_html<W: Write>(
    mut output: W,
    content: &PaperKeyContent,
    subject: Option<&str>,
    qr: &mut dyn FnMut(&str) -> Result<Vec<u8>, Error>,
) -> Result<(), Error> {
    writeln!(output, "<!DOCTYPE html>")?;
    writeln!(output, "<html lang=\"en\">")?;
    writeln!(output, "<head>")?;
    writeln!(output, "<meta charset=\"utf-8\">")?;
    writeln!(output, "<title>Proxmox Backup Paperkey</title>")?;
    writeln!(
        output,
        "<style>p {{ font-size: 12pt; }} pre {{ font-size: 10pt; }} .page {{ page-break-after: always; }}</style>"
    )?;
    writeln!(output, "</head>")?;
    writeln!(output, "<body>")?;
    if let Some(subject) = subject {
        writeln!(output, "<p>Subject: {}</p>", html_escape(subject))?;
    }
    match content {
        PaperKeyContent::PrivateKey(lines) => {
            for (block_nr, block) in lines.chunks(HTML_BLOCK_LINES).enumerate() {
                writeln!(output, "<div class=\"page\">")?;
                writeln!(output, "<pre>")?;
                for (i, line) in block.iter().enumerate() {
                    writeln!(
                        output,
                        "{:02}: {}",
                        block_nr * HTML_BLOCK_LINES + i,
                        html_escape(line)
                    )?;
                }
                writeln!(output, "</pre>")?;
                writeln!(output, "{}", qr_img(qr, &block.join("\n"))?)?;
                writeln!(output, "</div>")?;
            }
        }
        PaperKeyContent::KeyFile(lines) => {
            writeln!(output, "<div>")?;
            writeln!(output, "<pre>")?;
            writeln!(output, "{BEGIN_MARKER}")?;
            for line in lines {
                writeln!(output, "{}", html_escape(line))?;
            }
            writeln!(output, "{END_MARKER}")?;
            writeln!(output, "</pre>")?;
            writeln!(output, "{}", qr_img(qr, &lines.join("\n"))?)?;
            writeln!(output, "</div>")?;
        }
    }
    writeln!(output, "</body>")?;
    writeln!(output, "</html>")?;
    output.flush()?;
    Ok(())
}

/// Extracts the key file from a printed (or scanned) paper key's text.
pub fn parse_paper_key_text(text: &str) -> Result<KeyConfig, Error> {
    let start = text
        .find(BEGIN_MARKER)
        .ok_or_else(|| format_err!("paper key: missing '{BEGIN_MARKER}'"))?
        + BEGIN_MARKER.len();
    let len = text[start..]
        .find(END_MARKER)
        .ok_or_else(|| format_err!("paper key: missing '{END_MARKER}'"))?;
    KeyConfig::from_json(&text[start..start + len]).context("paper key: invalid key file")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_JSON: &str = "{\"kdf\":null,\"created\":\"2024-01-01T00:00:00+00:00\",\"modified\":\"2024-01-01T00:00:00+00:00\",\"data\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\",\"fingerprint\":\"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b\"}";

    fn fake_qr(input: &str) -> Result<Vec<u8>, Error> {
        Ok(format!("[QR {}]", input.replace('\n', "|")).into_bytes())
    }

    fn local_time() -> String {
        pbs_api_types::time::epoch_to_rfc3339(1_704_067_200).unwrap()
    }

    fn expected_json_lines() -> Vec<String> {
        let t = local_time();
        vec![
            "{".to_string(),
            "  \"kdf\": null,".to_string(),
            format!("  \"created\": \"{t}\","),
            format!("  \"modified\": \"{t}\","),
            "  \"data\": \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\",".to_string(),
            "  \"fingerprint\": \"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b\"".to_string(),
            "}".to_string(),
        ]
    }

    fn fake_pem(lines: usize) -> String {
        let mut pem = String::from("-----BEGIN ENCRYPTED PRIVATE KEY-----\n");
        for i in 1..lines - 1 {
            pem.push_str(&format!("LINE{i:02}\n"));
        }
        pem.push_str("-----END ENCRYPTED PRIVATE KEY-----\n");
        pem
    }

    #[test]
    fn key_file_text_layout() {
        let content = PaperKeyContent::parse(KEY_JSON).unwrap();
        let lines = expected_json_lines();
        assert_eq!(content, PaperKeyContent::KeyFile(lines.clone()));
        let mut out = Vec::new();
        render_text(&mut out, &content, Some("my key"), &mut fake_qr).unwrap();
        let expected = format!(
            "Subject: my key\n\n{BEGIN_MARKER}\n{}\n{END_MARKER}\n[QR {}]\n",
            lines.join("\n"),
            lines.join("|")
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        let mut out = Vec::new();
        render_text(&mut out, &content, None, &mut fake_qr).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&format!("{BEGIN_MARKER}\n{{\n  \"kdf\": null,\n")));
        // The printed key can be typed back in.
        let parsed = parse_paper_key_text(&text).unwrap();
        assert_eq!(parsed, KeyConfig::from_json(KEY_JSON).unwrap());
    }

    #[test]
    fn private_key_text_layout() {
        let pem = fake_pem(22);
        let content = PaperKeyContent::parse(&pem).unwrap();
        let mut out = Vec::new();
        render_text(&mut out, &content, None, &mut fake_qr).unwrap();
        let mut expected = String::new();
        let lines: Vec<&str> = pem.lines().collect();
        for (block_nr, block) in lines.chunks(5).enumerate() {
            for (i, line) in block.iter().enumerate() {
                let nr = block_nr * 5 + i;
                if nr < 10 {
                    expected.push(' ');
                }
                expected.push_str(&format!("{nr}: {line}\n"));
            }
            expected.push_str(&format!("[QR {}]\n\x0c\n", block.join("|")));
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, expected);
        assert!(text.starts_with(" 0: -----BEGIN ENCRYPTED PRIVATE KEY-----\n 1: LINE01\n"));
        assert!(text.contains("\n10: LINE10\n"));
        assert_eq!(text.matches('\x0c').count(), 5);
    }

    #[test]
    fn html_layout() {
        let content = PaperKeyContent::parse(KEY_JSON).unwrap();
        let mut out = Vec::new();
        render_html(&mut out, &content, Some("<me>"), &mut |input| {
            Ok(input.as_bytes().to_vec())
        })
        .unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("<p>Subject: &lt;me&gt;</p>"));
        let qr_b64 = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(expected_json_lines().join("\n"));
        assert!(html.contains(&format!(
            "<img width=\"500pt\" height=\"500pt\" src=\"data:image/svg+xml;base64,{qr_b64}\"/>"
        )));
        assert!(html.contains(&format!("{BEGIN_MARKER}\n{{\n  &quot;kdf&quot;: null,")));

        let pem = PaperKeyContent::parse(&fake_pem(25)).unwrap();
        let mut out = Vec::new();
        render_html(&mut out, &pem, None, &mut fake_qr).unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("\n00: -----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert!(html.contains("\n19: LINE19\n</pre>"));
        assert!(html.contains("\n20: LINE20\n"));
        assert_eq!(html.matches("<img ").count(), 2);
    }

    #[test]
    fn input_validation() {
        assert!(PaperKeyContent::parse(&fake_pem(19)).is_err());
        assert!(PaperKeyContent::parse(&fake_pem(20)).is_ok());
        let truncated = fake_pem(30).replace("-----END ENCRYPTED PRIVATE KEY-----\n", "");
        assert!(PaperKeyContent::parse(&truncated).is_err());
        let mismatched = fake_pem(30).replace("END ENCRYPTED", "END RSA");
        assert!(PaperKeyContent::parse(&mismatched).is_err());
        let rsa = fake_pem(30).replace("ENCRYPTED PRIVATE", "RSA PRIVATE");
        assert!(matches!(
            PaperKeyContent::parse(&rsa),
            Ok(PaperKeyContent::PrivateKey(_))
        ));
        assert!(PaperKeyContent::parse("not a key").is_err());
        assert!(parse_paper_key_text("no markers").is_err());
    }

    fn qrencode_available() -> bool {
        match Command::new("qrencode").arg("--version").output() {
            Ok(_) => true,
            Err(_) => {
                eprintln!("qrencode is not installed; skipping the QR code part of this test");
                false
            }
        }
    }

    #[test]
    fn generate_with_real_qrencode() {
        if !qrencode_available() {
            let err =
                generate_paper_key(Vec::new(), KEY_JSON, None, PaperkeyFormat::Text).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("'qrencode'") && msg.contains("Debian package"),
                "{msg}"
            );
            return;
        }
        let mut out = Vec::new();
        generate_paper_key(&mut out, KEY_JSON, Some("s".into()), PaperkeyFormat::Text).unwrap();
        let text = String::from_utf8(out).unwrap();
        let layout_end = text.find(END_MARKER).unwrap() + END_MARKER.len() + 1;
        let lines = expected_json_lines();
        assert_eq!(
            &text[..layout_end],
            format!(
                "Subject: s\n\n{BEGIN_MARKER}\n{}\n{END_MARKER}\n",
                lines.join("\n")
            )
        );
        assert!(text[layout_end..].contains('█') || text[layout_end..].contains('▀'));
        let mut out = Vec::new();
        generate_paper_key(&mut out, KEY_JSON, None, PaperkeyFormat::Html).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("src=\"data:image/svg+xml;base64,"));
    }
}
