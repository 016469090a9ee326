//! A strict reader of the Prometheus text exposition for tests: every sample with its labels
//! unescaped, checked against the format's rules (each family typed once, before its samples;
//! a sample's labels never repeat a name; no sample twice).

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug)]
pub(crate) struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name (as in `# TYPE`) -> type.
    pub types: HashMap<String, String>,
    text: String,
}

impl Exposition {
    /// Parses `text`; panics (showing the line) on anything the format does not allow.
    pub fn parse(text: &str) -> Exposition {
        let mut types = HashMap::new();
        let mut helped = HashSet::new();
        let mut samples = Vec::new();
        let mut seen = HashSet::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(
                    helped.insert(name.to_owned()),
                    "family declared twice: {line}"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{line}"));
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "type of {line}"
                );
                assert!(helped.contains(name), "TYPE without HELP before it: {line}");
                let old = types.insert(name.to_owned(), kind.to_owned());
                assert!(old.is_none(), "family declared twice: {line}\n{text}");
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let sample = sample(line);
            let family = family_of(&sample.name, &types)
                .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
            if types[family] == "counter" {
                assert!(sample.name.ends_with("_total"), "counter sample: {line}");
            }
            assert!(
                seen.insert(format!("{}{:?}", sample.name, sample.labels)),
                "sample twice: {line}"
            );
            samples.push(sample);
        }
        Exposition {
            samples,
            types,
            text: text.to_owned(),
        }
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// [`Exposition::get`], panicking with the whole text when the sample is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    /// Every sample named `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

/// The `# TYPE` name a sample belongs to (a histogram's `_bucket`, `_sum` and `_count` belong to
/// the histogram).
fn family_of<'a>(sample: &str, types: &'a HashMap<String, String>) -> Option<&'a str> {
    if let Some((name, _)) = types.get_key_value(sample) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = sample.strip_suffix(suffix)?;
        types
            .get_key_value(base)
            .filter(|(_, kind)| *kind == "histogram")
            .map(|(name, _)| name.as_str())
    })
}

/// `name{label="value",...} number`, label values unescaped (`\\`, `\"`, `\n`).
fn sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "metric name: {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().unwrap_or_else(|| panic!("labels: {line}"));
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' if key.is_empty() => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().unwrap_or_else(|| panic!("value: {line}")).1 {
                            '"' => break,
                            '\\' => match chars.next().map(|(_, c)| c) {
                                Some('\\') => value.push('\\'),
                                Some('"') => value.push('"'),
                                Some('n') => value.push('\n'),
                                other => panic!("escape {other:?}: {line}"),
                            },
                            '\n' => panic!("raw newline: {line}"),
                            c => value.push(c),
                        }
                    }
                    let k = std::mem::take(&mut key);
                    assert!(labels.insert(k, value).is_none(), "label twice: {line}");
                }
                c => key.push(c),
            }
        }
    }
    let value = rest.trim_start().trim_end();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value {v:?}: {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_escapes_and_histograms() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\n\
                    a_total{k=\"x\\\"y\\\\z\\n\",p=\"q\"} 3\n\
                    # HELP h H.\n# TYPE h histogram\n\
                    h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.25\nh_count 2\n";
        let e = Exposition::parse(text);
        assert_eq!(e.value("a_total", &[("k", "x\"y\\z\n"), ("p", "q")]), 3.0);
        assert_eq!(
            e.get("a_total", &[("p", "q")]),
            None,
            "labels match exactly"
        );
        assert_eq!(e.value("h_count", &[]), 2.0);
        assert_eq!(e.value("h_bucket", &[("le", "+Inf")]), 2.0);
        assert_eq!(e.series("h_bucket").len(), 2);
    }

    #[test]
    #[should_panic(expected = "family declared twice")]
    fn a_family_declared_twice_is_refused() {
        Exposition::parse("# HELP g G.\n# TYPE g gauge\ng 1\n# HELP g G.\n# TYPE g gauge\n");
    }

    #[test]
    #[should_panic(expected = "sample before its TYPE")]
    fn an_undeclared_sample_is_refused() {
        Exposition::parse("g 1\n");
    }
}
