//! Gives the shared library its soname, so programs linked with
//! `-lshmkit` record `libshmkit.so.0` whatever cargo named the file.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmkit.so.0");
}
