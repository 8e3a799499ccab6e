fn main() {
    // sqlx::migrate! embeds the folders at compile time; new files must trigger a rebuild.
    println!("cargo:rerun-if-changed=migrations");
}
