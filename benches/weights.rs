//! Weight loading benchmark (issue 5): load time, GB/s and peak anonymous memory for a generated
//! 1 GiB F32 file converted to f16 on upload and a 512 MiB f16 file, against a plain memcpy of the
//! same bytes in the same run. `cargo bench --bench weights [-- --scale 0.25 --reps 3 --json]`.
//! Files are written to HEEDFUL_BENCH_DIR (default: the temp dir) and removed afterwards.

fn main() -> heedful::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let scale = arg("--scale").unwrap_or(1.0);
    let reps = arg("--reps").unwrap_or(3.0) as usize;
    let dir = std::env::var_os("HEEDFUL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let gpu = heedful::Gpu::shared()?;
    let c = gpu.caps();
    eprintln!(
        "adapter: {} ({:?}, {:?})",
        c.adapter_name, c.backend, c.device_type
    );
    let results = heedful::weights::bench::bench_load(&gpu, &dir, scale, reps)?;
    if args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    } else {
        for r in &results {
            println!("{r}");
        }
    }
    Ok(())
}
