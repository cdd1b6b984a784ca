//! Test vectors of PROTOCOL.md: `generate FILE` writes them, `check FILE`
//! replays any file of the schema and reports every mismatch.
//!
//! ```text
//! cargo run -p sotto-core --example vectors -- generate docs/test-vectors/v1.json
//! cargo run -p sotto-core --example vectors -- check docs/test-vectors/v1.json
//! ```

mod conformance;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, file] if cmd == "generate" => match conformance::generate_json() {
            Ok(json) => match std::fs::write(file, json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write {file}: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: generation failed: {e}");
                ExitCode::FAILURE
            }
        },
        [cmd, file] if cmd == "check" => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {file}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let report = conformance::check_json(&text);
            for line in &report.failures {
                println!("{line}");
            }
            println!("{}", report.summary());
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: vectors (generate|check) FILE");
            ExitCode::from(2)
        }
    }
}
