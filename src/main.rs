fn main() {
    std::process::exit(bulkgen::cli::main());
}
