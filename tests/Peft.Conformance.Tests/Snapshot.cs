using System.Runtime.CompilerServices;

namespace Peft.Conformance.Tests;

/// <summary>Checked-in baselines of generated files under Snapshots/; <c>PEFT_UPDATE_SNAPSHOTS=1</c> rewrites them.</summary>
internal static class Snapshot
{
    public static void Match(string actual, string fileName, [CallerFilePath] string callerFile = "")
    {
        string path = Path.Combine(Path.GetDirectoryName(callerFile)!, "Snapshots", fileName);
        actual = actual.Replace("\r\n", "\n");
        if (Environment.GetEnvironmentVariable("PEFT_UPDATE_SNAPSHOTS") == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, actual);
            return;
        }

        Assert.True(File.Exists(path), $"No baseline {path}. Run the tests with PEFT_UPDATE_SNAPSHOTS=1 to create it.");
        Assert.Equal(File.ReadAllText(path).Replace("\r\n", "\n"), actual);
    }
}
