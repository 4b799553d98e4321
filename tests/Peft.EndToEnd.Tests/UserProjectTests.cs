using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;

namespace Peft.EndToEnd.Tests;

/// <summary>
/// Packs Peft.Runtime (which carries the generator, analyzers and the TorchSharp native fix), then builds and runs
/// samples/AdapterBasics as a user's project that references only the package, outside this repository.
/// </summary>
public sealed class UserProjectTests : IClassFixture<PackageFeedFixture>
{
    private readonly PackageFeedFixture _feed;

    public UserProjectTests(PackageFeedFixture feed) => _feed = feed;

    [Fact]
    public void SampleBuildsFromThePackageAndRuns()
    {
        string project = _feed.CreateUserProject("ok", showMistakes: false);
        var build = Shell.Run("dotnet", $"build \"{project}\" -c Release", Path.GetDirectoryName(project)!, TimeSpan.FromMinutes(5));
        Assert.True(build.ExitCode == 0, "user project build failed:\n" + build.Output);
        Assert.DoesNotContain("PEFT9002", build.Output);

        // The generator ran in the real build: its file is among the compiler's generated outputs.
        string generatedDir = Path.Combine(Path.GetDirectoryName(project)!, "obj", "generated");
        Assert.True(Directory.Exists(generatedDir), "EmitCompilerGeneratedFiles output missing: " + generatedDir);
        var generated = Directory.GetFiles(generatedDir, "*.Peft.g.cs", SearchOption.AllDirectories);
        Assert.Contains(generated, f => f.EndsWith("AdapterBasics.TinyClassifier.Peft.g.cs", StringComparison.Ordinal));

        var run = Shell.Run("dotnet", $"run --project \"{project}\" -c Release --no-build", Path.GetDirectoryName(project)!, TimeSpan.FromMinutes(3));
        Assert.True(run.ExitCode == 0, "user program failed:\n" + run.Output);
        Assert.Contains("trainable params: ", run.Output);
        Assert.Contains("adapter-basics: OK", run.Output);
    }

    [Fact]
    public void DeliberateMistakesFailTheBuildWithTheirIds()
    {
        string project = _feed.CreateUserProject("mistakes", showMistakes: true);
        string sarif = Path.Combine(Path.GetDirectoryName(project)!, "build.sarif");
        var build = Shell.Run("dotnet", $"build \"{project}\" -c Release -p:PeftShowMistakes=true \"-p:ErrorLog={sarif}\"", Path.GetDirectoryName(project)!, TimeSpan.FromMinutes(5));
        Assert.NotEqual(0, build.ExitCode);
        // Mistakes/Mistakes.cs holds one deliberate mistake per diagnostic; each must reach `dotnet build` as an error.
        foreach (var id in new[] { "PEFT0001", "PEFT0002", "PEFT0003", "PEFT0004", "PEFT0005", "PEFT0006", "PEFT0007", "PEFT0008", "PEFT0009", "PEFT0010", "PEFT0012", "PEFT0013", "PEFT0017", "PEFT0018" })
        {
            Assert.True(build.Output.Contains($"Mistakes.cs", StringComparison.Ordinal) && build.Output.Contains($"error {id}", StringComparison.Ordinal),
                $"expected 'error {id}' in the build output:\n{build.Output}");
        }
        Assert.Contains("131,072", build.Output); // PEFT0010 states the computed count

        // Every reported rule's help link is the file URI of its page inside the package in NuGet's packages folder
        // (buildTransitive/Peft.Runtime.props tells the analyzers where that is): a link that opens, not a dead web address.
        Assert.True(File.Exists(sarif), "the compiler wrote no error log " + sarif + ":\n" + build.Output);
        var rules = SarifRules(JsonNode.Parse(File.ReadAllText(sarif)));
        Assert.Contains("PEFT0013", rules.Keys);
        Assert.True(rules.Count >= 14, "rules in the error log: " + string.Join(", ", rules.Keys));
        foreach (var (id, helpUri) in rules)
        {
            Assert.False(string.IsNullOrEmpty(helpUri), $"{id} has no help link");
            var uri = new Uri(helpUri!);
            Assert.True(uri.IsFile, $"{id}: {helpUri}");
            Assert.Contains(Path.Combine("peft.runtime", _feed.Version, "docs", "diagnostics", id + ".md"), uri.LocalPath, StringComparison.OrdinalIgnoreCase);
            Assert.True(File.Exists(uri.LocalPath), $"{id}: {uri.LocalPath} does not exist");
            Assert.StartsWith($"# {id}: ", File.ReadAllText(uri.LocalPath), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ThePackageShipsEveryDiagnosticsPage()
    {
        string package = Path.Combine(_feed.Feed, $"Peft.Runtime.{_feed.Version}.nupkg");
        using var zip = ZipFile.OpenRead(package);
        var entries = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
        var pages = Directory.GetFiles(Path.Combine(_feed.RepoRoot, "docs", "diagnostics"), "*.md").Select(Path.GetFileName).ToList();
        Assert.Contains("PEFT0001.md", pages);
        Assert.Contains("README.md", pages);
        foreach (var page in pages)
        {
            Assert.Contains("docs/diagnostics/" + page, entries);
        }
        Assert.Contains("buildTransitive/Peft.Runtime.props", entries);
    }

    /// <summary>Rule ID to help URI of every PEFT rule in a SARIF log (version 1: a map of rules; 2.1: a list).</summary>
    private static Dictionary<string, string?> SarifRules(JsonNode? node)
    {
        var rules = new Dictionary<string, string?>(StringComparer.Ordinal);
        void Walk(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    if (o["id"] is JsonValue id && id.TryGetValue<string>(out var text) && text.StartsWith("PEFT", StringComparison.Ordinal)
                        && (o.ContainsKey("helpUri") || o.ContainsKey("shortDescription")))
                    {
                        rules[text] = (string?)o["helpUri"];
                    }
                    foreach (var (_, child) in o) Walk(child);
                    break;
                case JsonArray a:
                    foreach (var child in a) Walk(child);
                    break;
            }
        }
        Walk(node);
        return rules;
    }

    [Fact]
    public void AnUnparsableBudgetFailsTheBuildWithItsId()
    {
        string project = _feed.CreateUserProject("badbudget", showMistakes: false);
        var build = Shell.Run("dotnet", $"build \"{project}\" -c Release -p:PeftMaxTrainableParameters=lots", Path.GetDirectoryName(project)!, TimeSpan.FromMinutes(5));
        Assert.NotEqual(0, build.ExitCode);
        Assert.Contains("error PEFT0011", build.Output);
        Assert.Contains("lots", build.Output);
    }
}

/// <summary>Packs the runtime once per test run into a private feed with a unique version.</summary>
public sealed class PackageFeedFixture : IDisposable
{
    public PackageFeedFixture()
    {
        RepoRoot = FindRepoRoot();
        WorkDir = Path.Combine(Path.GetTempPath(), "peft-e2e-" + Guid.NewGuid().ToString("N")[..8]);
        Feed = Path.Combine(WorkDir, "feed");
        Directory.CreateDirectory(Feed);
        // A unique version keeps NuGet's global cache from serving an older pack of the same version.
        Version = "0.0.0-e2e." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture);
        string runtimeProject = Path.Combine(RepoRoot, "src", "Peft.Runtime", "Peft.Runtime.csproj");
        // Pack what the solution build already produced (same configuration as this test assembly), so the test
        // never rebuilds files other test processes may be reading.
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        var pack = Shell.Run("dotnet", $"pack \"{runtimeProject}\" -c {configuration} --no-build -o \"{Feed}\" -p:PackageVersion={Version}", RepoRoot, TimeSpan.FromMinutes(5));
        if (pack.ExitCode != 0) throw new InvalidOperationException("dotnet pack failed:\n" + pack.Output);
    }

    public string RepoRoot { get; }

    public string WorkDir { get; }

    public string Feed { get; }

    public string Version { get; }

    public string CreateUserProject(string name, bool showMistakes)
    {
        string dir = Path.Combine(WorkDir, name);
        Directory.CreateDirectory(dir);
        string sample = Path.Combine(RepoRoot, "samples", "AdapterBasics");
        foreach (var file in Directory.GetFiles(sample, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(sample, file);
            if (relative.StartsWith("obj", StringComparison.Ordinal) || relative.StartsWith("bin", StringComparison.Ordinal)) continue;
            string target = Path.Combine(dir, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        File.WriteAllText(Path.Combine(dir, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{Feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
            </configuration>
            """);
        string csproj = Path.Combine(dir, "AdapterBasics.csproj");
        File.WriteAllText(csproj, $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                <NoWarn>$(NoWarn);NU1603;NU1608</NoWarn>
                <EmitCompilerGeneratedFiles>true</EmitCompilerGeneratedFiles>
                <CompilerGeneratedFilesOutputPath>obj/generated</CompilerGeneratedFilesOutputPath>
                <PeftMaxTrainableParameters>50000</PeftMaxTrainableParameters>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Peft.Runtime" Version="{Version}" />
                <!-- The application picks the libtorch backend (README, "Using the packages"); TorchSharp-cpu is the
                     cross-platform choice, this one is the Linux x64 part of it. -->
                <PackageReference Include="libtorch-cpu-linux-x64" Version="2.10.0" />
              </ItemGroup>
              <ItemGroup Condition="'$(PeftShowMistakes)' != 'true'">
                <Compile Remove="Mistakes/**" />
              </ItemGroup>
            </Project>
            """);
        return csproj;
    }

    public void Dispose()
    {
        try { Directory.Delete(WorkDir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        // Drop this run's package from NuGet's global cache so runs do not accumulate.
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string cached = Path.Combine(cache, "peft.runtime", Version);
        try { if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Peft.Generators.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("Could not find the repository root (Peft.Generators.sln) above " + AppContext.BaseDirectory);
    }
}

internal static class Shell
{
    public static (int ExitCode, string Output) Run(string file, string arguments, string workingDirectory, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file, arguments)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // The outer `dotnet test` sets MSBuild variables that would leak into the child build.
        foreach (var key in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "DOTNET_HOST_PATH" })
        {
            start.Environment.Remove(key);
        }
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout}:\n{output}");
        }
        process.WaitForExit();
        lock (output) return (process.ExitCode, output.ToString());
    }
}
