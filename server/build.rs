//! Lists `admin-ui/dist/` for the console's routes (src/http/console.rs): the bundle is
//! split into chunks whose names carry a hash of their content, so the files to embed are
//! read from the directory rather than named in the source.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("../admin-ui/dist");
    // A directory given here is watched with every file in it: a rebuilt bundle, an added
    // or a removed chunk rebuilds the server.
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dist)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dist.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .map(|path| (name_of(&path), path))
        .collect();
    // Sorted, so the generated source does not depend on the directory's order.
    files.sort();
    let mut source = String::from("&[\n");
    for (name, path) in &files {
        let content_type = content_type(name).unwrap_or_else(|| {
            panic!(
                "admin-ui/dist/{name}: the console serves .html, .js and .css files only; \
                 add its content type to server/build.rs"
            )
        });
        let _ = writeln!(
            source,
            "    Asset {{ name: {name:?}, content_type: {content_type:?}, body: include_bytes!({:?}) }},",
            path.display().to_string()
        );
    }
    source.push(']');
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("console_assets.rs");
    std::fs::write(&out, source)
        .unwrap_or_else(|error| panic!("writing {}: {error}", out.display()));
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn content_type(name: &str) -> Option<&'static str> {
    match name.rsplit_once('.')?.1 {
        "js" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "html" => Some("text/html; charset=utf-8"),
        _ => None,
    }
}
