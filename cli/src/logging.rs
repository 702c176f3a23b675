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

/// Installs the logger: plain text lines, or one JSON object per line (`json`) for log
/// collectors such as those of Kubernetes.
pub fn init(spec: &str, json: bool) -> Result<(), String> {
    let (default, modules) = parse_filter(spec)?;
    let mut dispatch = fern::Dispatch::new()
        .format(move |out, message, record| {
            let time = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            if json {
                out.finish(format_args!(
                    "{{\"timestamp\":\"{time}\",\"level\":\"{}\",\"target\":{},\"message\":{}}}",
                    record.level(),
                    json_string(record.target()),
                    json_string(&message.to_string())
                ))
            } else {
                out.finish(format_args!("{time} {:5} {}: {}", record.level(), record.target(), message))
            }
        })
        .level(default)
        .level_for("redis", LevelFilter::Warn);
    for (module, level) in modules {
        dispatch = dispatch.level_for(module, level);
    }
    dispatch.chain(std::io::stderr()).apply().map_err(|e| e.to_string())
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_json_requires() {
        assert_eq!(json_string("a \"b\"\n\\c\u{1}"), r#""a \"b\"\n\\c\u0001""#);
    }

    #[test]
    fn filters_have_a_default_and_per_module_levels() {
        let (default, modules) = parse_filter("warn,korvet-core=debug").unwrap();
        assert_eq!(default, LevelFilter::Warn);
        assert_eq!(modules, vec![("korvet_core".to_string(), LevelFilter::Debug)]);
        assert!(parse_filter("loud").is_err());
    }
}
