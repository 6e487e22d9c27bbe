//! `cargo bench`: runs heedful's benchmark suites (the same code as `heedful bench`).
//!
//! `cargo bench -- FILTER` runs the cases whose `suite/op/shape` key contains FILTER; `--json`
//! prints one JSON document instead of text lines. Flags cargo passes (`--bench`) are ignored.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let filter = args.iter().find(|a| !a.starts_with("--")).cloned();
    if let Err(e) = heedful::bench::run(filter.as_deref(), json) {
        eprintln!("heedful bench: {e}");
        std::process::exit(1);
    }
}
