namespace Peft.Generators.Tests;

/// <summary>Generated files compared with the baselines in Snapshots/ (PEFT_UPDATE_SNAPSHOTS=1 rewrites them).</summary>
public class SnapshotTests
{
    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var (name, _) in Sources.All) data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GeneratedFilesMatchBaselines(string caseName)
    {
        string source = Sources.All.Single(c => c.Name == caseName).Source;
        var run = TestCompilation.Run(TestCompilation.Create(source));

        Assert.NotEmpty(run.Sources);
        foreach (var generated in run.Sources)
        {
            Snapshot.Match(generated.SourceText.ToString(), caseName + "/" + generated.HintName);
        }
    }

    [Fact]
    public void OneFilePerAnnotatedClassWithExpectedHintNames()
    {
        var hintNames = Sources.All
            .SelectMany(c => TestCompilation.Run(TestCompilation.Create(c.Source)).Sources.Select(s => s.HintName))
            .OrderBy(n => n, StringComparer.Ordinal)
            .ToArray();

        Assert.Equal(
            new[]
            {
                "Classifier.Peft.g.cs",
                "FrozenEncoder.Peft.g.cs",
                "MyModels.Attention.Peft.g.cs",
                "MyModels.Inheritance.BaseBlock.Peft.g.cs",
                "MyModels.Inheritance.DerivedBlock.Peft.g.cs",
                "MyModels.Multi.MultiAdapterModel.Peft.g.cs",
                "MyModels.Nested.Outer`1.Registry.Block`2.Peft.g.cs",
                "MyModels.Prompts.PromptModel.Peft.g.cs",
                "MyModels.Props.PropertyModel.Peft.g.cs",
                "MyModels.Siblings.DeclaredAttention.Peft.g.cs",
                "MyModels.Siblings.Mlp.Peft.g.cs",
                "MyModels.Siblings.SelfAttention.Peft.g.cs",
                "MyModels.Targets.FeedForward.Peft.g.cs",
            },
            hintNames);
    }

    [Fact]
    public void SnapshotDiffShowsChangedLines()
    {
        string diff = Snapshot.Diff("a\nb\nc\nd", "a\nB\nc\nd\ne");

        Assert.Contains("- b", diff);
        Assert.Contains("+ B", diff);
        Assert.Contains("+ e", diff);
        Assert.Contains("  a", diff);
        Assert.True(diff.IndexOf("- b", StringComparison.Ordinal) < diff.IndexOf("+ B", StringComparison.Ordinal), diff);
    }
}
