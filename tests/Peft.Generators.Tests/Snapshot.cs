using System.Runtime.CompilerServices;
using System.Text;

namespace Peft.Generators.Tests;

/// <summary>
/// Checked-in baselines of generated files under Snapshots/. A mismatch fails with a line diff; run the tests with
/// <c>PEFT_UPDATE_SNAPSHOTS=1</c> to rewrite the baselines (then review them with git diff).
/// </summary>
internal static class Snapshot
{
    public const string UpdateVariable = "PEFT_UPDATE_SNAPSHOTS";

    public static void Match(string actual, string fileName, [CallerFilePath] string callerFile = "")
    {
        string path = Path.Combine(ProjectDirectory(callerFile), "Snapshots", fileName);
        actual = Normalize(actual);
        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            if (!File.Exists(path) || Normalize(File.ReadAllText(path)) != actual) File.WriteAllText(path, actual);
            return;
        }

        Assert.True(File.Exists(path), $"No baseline {path}. Run the tests with {UpdateVariable}=1 to create it.");
        string expected = Normalize(File.ReadAllText(path));
        if (expected != actual)
        {
            Assert.Fail($"Generated file differs from baseline {path} (--- baseline, +++ generated; {UpdateVariable}=1 rewrites it):"
                + Environment.NewLine + Diff(expected, actual));
        }
    }

    private static string Normalize(string text) => text.Replace("\r\n", "\n");

    /// <summary>The test project folder: found upwards from the test binaries, else from this file's compile-time path.</summary>
    private static string ProjectDirectory(string callerFile)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Peft.Generators.Tests.csproj"))) return dir.FullName;
        }
        return Path.GetDirectoryName(callerFile)!;
    }

    /// <summary>A unified-style diff (LCS over lines) with two lines of context around each change.</summary>
    internal static string Diff(string expected, string actual)
    {
        string[] a = expected.Split('\n');
        string[] b = actual.Split('\n');
        var lcs = new int[a.Length + 1, b.Length + 1];
        for (int i = a.Length - 1; i >= 0; i--)
        {
            for (int j = b.Length - 1; j >= 0; j--)
            {
                lcs[i, j] = a[i] == b[j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
            }
        }

        var lines = new List<(char Kind, string Text, int Line)>();
        int x = 0, y = 0;
        while (x < a.Length || y < b.Length)
        {
            if (x < a.Length && y < b.Length && a[x] == b[y]) { lines.Add((' ', a[x], x + 1)); x++; y++; }
            else if (x < a.Length && (y == b.Length || lcs[x + 1, y] >= lcs[x, y + 1])) { lines.Add(('-', a[x], x + 1)); x++; }
            else { lines.Add(('+', b[y], y + 1)); y++; }
        }

        const int context = 2;
        var show = new bool[lines.Count];
        for (int i = 0; i < lines.Count; i++)
        {
            if (lines[i].Kind == ' ') continue;
            for (int k = Math.Max(0, i - context); k <= Math.Min(lines.Count - 1, i + context); k++) show[k] = true;
        }

        var text = new StringBuilder();
        for (int i = 0; i < lines.Count; i++)
        {
            if (!show[i]) continue;
            if (i == 0 || !show[i - 1]) text.AppendLine($"@@ near line {lines[i].Line} @@");
            text.Append(lines[i].Kind).Append(' ').AppendLine(lines[i].Text);
        }
        return text.ToString();
    }
}
