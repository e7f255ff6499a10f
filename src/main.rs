//! The `kiln` command line: flags become library calls; errors are reported with their causes.

fn main() {
    eprintln!("kiln: not ready yet");
    std::process::exit(2);
}
