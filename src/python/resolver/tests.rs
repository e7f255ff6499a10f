//! Tests of `python::resolver`.

use super::*;

/// name -> [(version, requires-dist lines)], newest first.
struct Table(BTreeMap<String, Vec<(Version, Vec<Requirement>)>>);

impl Table {
    fn new(rows: &[(&str, &str, &[&str])]) -> Table {
        let mut map: BTreeMap<String, Vec<(Version, Vec<Requirement>)>> = BTreeMap::new();
        for (name, version, deps) in rows {
            map.entry((*name).to_owned()).or_default().push((
                Version::from_str(version).unwrap(),
                deps.iter()
                    .map(|d| Requirement::from_str(d).unwrap())
                    .collect(),
            ));
        }
        for versions in map.values_mut() {
            versions.sort_by(|a, b| b.0.cmp(&a.0));
        }
        Table(map)
    }
}

impl Provider for Table {
    type Dist = ();
    type Error = String;
    fn versions(&self, name: &str, specifiers: &VersionSpecifiers) -> Result<Versions<()>, String> {
        let all = self.0.get(name).cloned().unwrap_or_default();
        Ok(Versions {
            found: all
                .iter()
                .filter(|(v, _)| specifiers.contains(v))
                .map(|(v, _)| (v.clone(), ()))
                .collect(),
            why_none: format!(
                "versions there: {}",
                all.iter()
                    .map(|(v, _)| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
    fn dependencies(&self, name: &str, version: &Version, _: &()) -> Result<Dependencies, String> {
        let deps = self.0[name]
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        Ok(Dependencies {
            requires_dist: deps,
            display_name: name.to_owned(),
            requires_other_python: None,
        })
    }
}

fn env(machine: &str) -> MarkerEnvironment {
    crate::python::target::PythonTarget::cpython_311_musl(machine).marker_environment()
}

fn run(table: &Table, roots: &[&str], machine: &str) -> Result<String, String> {
    let env = env(machine);
    let options = ResolveOptions {
        env: &env,
        no_deps: false,
        pre: false,
    };
    let roots = roots
        .iter()
        .map(|r| Demand {
            requirement: Requirement::from_str(r).unwrap(),
            requirer: Requirer::User("requirements.in:1".to_owned()),
        })
        .collect();
    resolve(table, roots, Vec::new(), &options)
        .map(|set| {
            set.iter()
                .map(|(n, r)| format!("{n}=={}", r.version))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .map_err(|e| e.to_string())
}

#[test]
fn newest_compatible_with_markers_and_extras() {
    let table = Table::new(&[
        (
            "app",
            "2.0",
            &[
                "lib>=1",
                "arm; platform_machine == 'aarch64'",
                "fast; extra == 'speed'",
            ],
        ),
        ("app", "1.0", &[]),
        ("lib", "1.5", &[]),
        ("lib", "1.0", &[]),
        ("lib", "2.0rc1", &[]),
        ("arm", "1.0", &[]),
        ("fast", "3.0", &["lib<1.5"]),
    ]);
    assert_eq!(
        run(&table, &["app"], "x86_64").unwrap(),
        "app==2.0 lib==1.5"
    );
    assert_eq!(
        run(&table, &["app"], "aarch64").unwrap(),
        "app==2.0 arm==1.0 lib==1.5"
    );
    // The extra brings `fast`, whose `lib<1.5` forces lib back to 1.0.
    assert_eq!(
        run(&table, &["app[speed]"], "x86_64").unwrap(),
        "app==2.0 fast==3.0 lib==1.0"
    );
    // An extra asked after the project was decided still brings its dependencies.
    assert_eq!(
        run(&table, &["app", "app[speed]"], "x86_64").unwrap(),
        "app==2.0 fast==3.0 lib==1.0"
    );
    assert_eq!(
        run(&table, &["lib>=2.0rc1"], "x86_64").unwrap(),
        "lib==2.0rc1"
    );
}

#[test]
fn backtracks_to_an_older_version() {
    // web 3 needs util>=2, but tool pins util<2: web falls back to 2.
    let table = Table::new(&[
        ("tool", "1.0", &["util<2"]),
        ("web", "3.0", &["util>=2"]),
        ("web", "2.0", &["util>=1"]),
        ("util", "2.0", &[]),
        ("util", "1.0", &[]),
    ]);
    assert_eq!(
        run(&table, &["web", "tool"], "x86_64").unwrap(),
        "tool==1.0 util==1.0 web==2.0"
    );
}

#[test]
fn conflicts_name_every_requirer() {
    let table = Table::new(&[
        ("tool", "1.0", &["util<2"]),
        ("web", "3.0", &["util>=2"]),
        ("util", "2.0", &[]),
        ("util", "1.0", &[]),
    ]);
    let err = run(&table, &["web", "tool"], "x86_64").unwrap_err();
    assert!(err.contains("conflict on `util`"), "{err}");
    assert!(err.contains("web 3.0 depends on util>=2"), "{err}");
    assert!(err.contains("tool 1.0 depends on util<2"), "{err}");
    let err = run(&table, &["web", "missing"], "x86_64").unwrap_err();
    assert!(
        err.starts_with("cannot install `missing`, which is required:"),
        "{err}"
    );
    let err = run(&table, &["util>=3"], "x86_64").unwrap_err();
    assert!(err.starts_with("no version of `util` fits:"), "{err}");
    assert!(
        err.contains("the user requested util>=3 (requirements.in:1)"),
        "{err}"
    );
    assert!(err.contains("versions there: 2.0, 1.0"), "{err}");
}
