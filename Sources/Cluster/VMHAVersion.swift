/// The version `vmha --version`, `vmhad --version`, the Debian package and support bundles report.
public enum VMHAVersion {
    public static let current = "0.13.0"
}
