//! Log output through log + fern: `LEVEL` or `LEVEL,module=LEVEL,...` filters.

use log::LevelFilter;

/// Parses `info` or `info,korvet_core=debug` into a default level and per-module levels.
pub fn parse_filter(spec: &str) -> Result<(LevelFilter, Vec<(String, LevelFilter)>), String> {
    let mut default = LevelFilter::Info;
    let mut modules = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            None => default = part.parse().map_err(|_| format!("unknown log level {part:?}; use off, error, warn, info, debug or trace"))?,
            Some((module, level)) => {
                let level = level.parse().map_err(|_| format!("unknown log level {level:?} for {module}"))?;
                modules.push((module.replace('-', "_"), level));
            }
        }
    }
    Ok((default, modules))
}

pub fn init(spec: &str) -> Result<(), String> {
    let (default, modules) = parse_filter(spec)?;
    let mut dispatch = fern::Dispatch::new()
        .format(|out, message, record| {
            out.finish(format_args!(
                "{} {:5} {}: {}",
                humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                record.level(),
                record.target(),
                message
            ))
        })
        .level(default)
        .level_for("redis", LevelFilter::Warn);
    for (module, level) in modules {
        dispatch = dispatch.level_for(module, level);
    }
    dispatch.chain(std::io::stderr()).apply().map_err(|e| e.to_string())
}
