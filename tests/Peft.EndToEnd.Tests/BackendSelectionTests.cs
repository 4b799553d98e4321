using System.Text.Json;

namespace Peft.EndToEnd.Tests;

/// <summary>
/// The application, not the library, picks the libtorch backend: the libraries reference TorchSharp's managed API only,
/// and this repository's applications take the native package from the PeftTorchBackend property. Restoring the CUDA
/// backend downloads several GB and needs no GPU to be proven wired: evaluating a project shows what it references.
/// </summary>
public sealed class BackendSelectionTests
{
    [Theory]
    [InlineData("", "libtorch-cpu-linux-x64", "TorchSharp-cuda-linux")]
    [InlineData("-p:PeftTorchBackend=cpu", "libtorch-cpu-linux-x64", "TorchSharp-cuda-linux")]
    [InlineData("-p:PeftTorchBackend=cuda", "TorchSharp-cuda-linux", "libtorch-cpu-linux-x64")]
    public void PeftTorchBackendSelectsTheNativePackage(string property, string expected, string absent)
    {
        string root = RepoRoot();
        var ids = PackageReferences(root, Path.Combine(root, "samples", "AdapterBasics", "AdapterBasics.csproj"), property);
        Assert.Contains(expected, ids);
        Assert.DoesNotContain(absent, ids);
    }

    [Theory]
    [InlineData("Peft.Runtime")]
    [InlineData("Peft.Models")]
    [InlineData("Peft.Hosting")]
    public void TheLibrariesReferenceNoNativeBackend(string library)
    {
        string root = RepoRoot();
        foreach (var property in new[] { "", "-p:PeftTorchBackend=cuda" })
        {
            var ids = PackageReferences(root, Path.Combine(root, "src", library, library + ".csproj"), property);
            Assert.DoesNotContain("libtorch-cpu-linux-x64", ids);
            Assert.DoesNotContain("TorchSharp-cuda-linux", ids);
            Assert.DoesNotContain("TorchSharp-cpu", ids);
        }
    }

    [Fact]
    public void TheCoreReferencesNeitherHostingNorTokenizers()
    {
        string root = RepoRoot();
        var ids = PackageReferences(root, Path.Combine(root, "src", "Peft.Runtime", "Peft.Runtime.csproj"), "");
        Assert.Equal(new[] { "TorchSharp" }, ids.Where(id => !id.StartsWith("Microsoft.CodeAnalysis", StringComparison.Ordinal)).ToArray());
    }

    private static List<string> PackageReferences(string root, string project, string property)
    {
        var result = Shell.Run("dotnet", $"msbuild \"{project}\" -getItem:PackageReference {property}", root, TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, result.Output);
        int start = result.Output.IndexOf('{');
        using var json = JsonDocument.Parse(result.Output[start..]);
        return json.RootElement.GetProperty("Items").GetProperty("PackageReference")
            .EnumerateArray().Select(item => item.GetProperty("Identity").GetString()!).ToList();
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Peft.Generators.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("repository root not found");
    }
}
