using System.Text.Json;

namespace Peft.EndToEnd.Tests;

/// <summary>
/// The TorchSharp backend is chosen by an MSBuild property. Restoring the CUDA backend downloads several GB and needs
/// no GPU to be proven wired: evaluating the project shows which native package it references.
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
        string project = Path.Combine(root, "src", "Peft.Runtime", "Peft.Runtime.csproj");
        var result = Shell.Run("dotnet", $"msbuild \"{project}\" -getItem:PackageReference {property}", root, TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, result.Output);
        int start = result.Output.IndexOf('{');
        using var json = JsonDocument.Parse(result.Output[start..]);
        var ids = json.RootElement.GetProperty("Items").GetProperty("PackageReference")
            .EnumerateArray().Select(item => item.GetProperty("Identity").GetString()).ToList();
        Assert.Contains("TorchSharp", ids);
        Assert.Contains(expected, ids);
        Assert.DoesNotContain(absent, ids);
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
