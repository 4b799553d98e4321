namespace Peft.Cli.Tests;

/// <summary>What one in-process invocation of the tool printed and returned.</summary>
public sealed record CliResult(int ExitCode, string Output, string Error)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Output}\n--- stderr\n{Error}";
}

/// <summary>Runs the <c>peft</c> command line in-process with captured writers.</summary>
public static class CliRunner
{
    /// <summary>The shapes of the tensors <c>peft inspect --json</c> lists, by name.</summary>
    public static Dictionary<string, long[]> InspectedShapes(System.Text.Json.Nodes.JsonObject json) =>
        json["tensors"]!.AsArray().ToDictionary(t => t!["name"]!.GetValue<string>(), t => t!["shape"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray());

    /// <summary>Runs <c>peft inspect --json</c> on <paramref name="path"/>, asserts it succeeded and returns its JSON.</summary>
    public static System.Text.Json.Nodes.JsonObject InspectJson(string path)
    {
        var result = Run("inspect", path, "--json");
        Assert.True(result.ExitCode == 0, result.ToString());
        return System.Text.Json.Nodes.JsonNode.Parse(result.Output)!.AsObject();
    }

    public static CliResult Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = PeftCli.RunAsync(args, output, error).GetAwaiter().GetResult();
        return new CliResult(code, output.ToString(), error.ToString());
    }
}

/// <summary>A temporary directory deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "peft-cli-tests-" + Guid.NewGuid().ToString("N"));

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
