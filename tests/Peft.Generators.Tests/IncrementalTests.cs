using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;
using Peft.Generators;

namespace Peft.Generators.Tests;

/// <summary>The named pipeline steps cache across edits that do not touch PEFT declarations.</summary>
public class IncrementalTests
{
    private const string UnrelatedFile = """
        namespace MyModels
        {
            /// <summary>Nothing to do with PEFT.</summary>
            public static class Helpers
            {
                /// <summary>Adds one.</summary>
                public static int Inc(int x) => x + 1;
            }
        }
        """;

    /// <summary>Steps every run of an annotated LoRA/Kronecker class goes through.</summary>
    private static readonly string[] StepsOnLoRAPath =
    {
        PeftTrackingNames.Disabled,
        PeftTrackingNames.LoRAModels,
        PeftTrackingNames.KroneckerModels,
        PeftTrackingNames.ClassModels,
        PeftTrackingNames.EmittableModels,
        PeftTrackingNames.OutputModels,
    };

    [Fact]
    public void AddingAnUnrelatedFileLeavesEveryStepCached()
    {
        var compilation = TestCompilation.Create(Sources.Attention, UnrelatedFile);
        var driver = TestCompilation.CreateDriver().RunGenerators(compilation);

        var edited = compilation.AddSyntaxTrees(TestCompilation.Parse(
            "namespace Other { /// <summary>New.</summary>\npublic sealed class Unrelated { } }", "New.cs"));
        var result = driver.RunGenerators(edited).GetRunResult().Results[0];

        AssertAllCachedOrUnchanged(result, StepsOnLoRAPath);
        AssertOutputsCached(result);
    }

    [Fact]
    public void AdaptableClassStaysCachedAcrossAnUnrelatedEdit()
    {
        var compilation = TestCompilation.Create(Sources.Adaptable, UnrelatedFile);
        var driver = TestCompilation.CreateDriver().RunGenerators(compilation);

        var edited = ReplaceText(compilation, "Input1.cs", "/// <summary>Adds one.</summary>", "// a comment\n/// <summary>Adds one.</summary>");
        var result = driver.RunGenerators(edited).GetRunResult().Results[0];

        AssertAllCachedOrUnchanged(result, new[]
        {
            PeftTrackingNames.Disabled, PeftTrackingNames.AdaptableModels, PeftTrackingNames.ClassModels,
            PeftTrackingNames.EmittableModels, PeftTrackingNames.OutputModels,
        });
        AssertOutputsCached(result);
    }

    [Fact]
    public void EditingACommentInAnotherFileLeavesEveryStepCached()
    {
        var compilation = TestCompilation.Create(Sources.Attention, UnrelatedFile);
        var driver = TestCompilation.CreateDriver().RunGenerators(compilation);

        var edited = ReplaceText(compilation, "Input1.cs", "/// <summary>Adds one.</summary>", "// a comment\n/// <summary>Adds one.</summary>");
        var result = driver.RunGenerators(edited).GetRunResult().Results[0];

        AssertAllCachedOrUnchanged(result, StepsOnLoRAPath);
        AssertOutputsCached(result);
    }

    [Fact]
    public void EditingACommentInTheAnnotatedFileReparsesButLeavesOutputCached()
    {
        var compilation = TestCompilation.Create(Sources.Attention);
        var driver = TestCompilation.CreateDriver().RunGenerators(compilation);

        // Shifts every position in the file: the model must not hold spans or locations.
        var edited = ReplaceText(compilation, "Input0.cs", "namespace MyModels", "// leading comment\n\nnamespace MyModels");
        var result = driver.RunGenerators(edited).GetRunResult().Results[0];

        AssertAllCachedOrUnchanged(result, StepsOnLoRAPath);
        AssertOutputsCached(result);
    }

    [Fact]
    public void ChangingAnAttributeArgumentModifiesModelAndOutput()
    {
        var compilation = TestCompilation.Create(Sources.Attention, UnrelatedFile);
        var driver = TestCompilation.CreateDriver().RunGenerators(compilation);
        string before = driver.GetRunResult().GeneratedTrees.Single().ToString();

        var edited = ReplaceText(compilation, "Input0.cs", "[LoRA(rank: 8, alpha: 16)]", "[LoRA(rank: 16, alpha: 16)]");
        driver = driver.RunGenerators(edited);
        var result = driver.GetRunResult().Results[0];
        string after = driver.GetRunResult().GeneratedTrees.Single().ToString();

        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(result, PeftTrackingNames.LoRAModels));
        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(result, PeftTrackingNames.ClassModels));
        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(result, PeftTrackingNames.OutputModels));
        Assert.Contains(IncrementalStepRunReason.Modified, result.TrackedOutputSteps["SourceOutput"].SelectMany(s => s.Outputs).Select(o => o.Reason));
        Assert.Contains("Rank: 8,", before);
        Assert.Contains("Rank: 16,", after);
        Assert.DoesNotContain("Rank: 8,", after);
    }

    [Fact]
    public void TogglingDisablePeftSourceGeneratorRemovesAndRestoresTheOutput()
    {
        var compilation = TestCompilation.Create(Sources.Attention);
        var driver = TestCompilation.CreateDriver(TestOptionsProvider.DisableGenerator("false")).RunGenerators(compilation);
        Assert.Single(driver.GetRunResult().GeneratedTrees);

        driver = driver.WithUpdatedAnalyzerConfigOptions(TestOptionsProvider.DisableGenerator("true")).RunGenerators(compilation);
        var result = driver.GetRunResult().Results[0];
        Assert.Empty(driver.GetRunResult().GeneratedTrees);
        Assert.Equal(new[] { IncrementalStepRunReason.Modified }, Reasons(result, PeftTrackingNames.Disabled));
        // The model steps did not re-run: only the cheap options step changed.
        Assert.All(Reasons(result, PeftTrackingNames.LoRAModels), r => Assert.Equal(IncrementalStepRunReason.Cached, r));

        driver = driver.WithUpdatedAnalyzerConfigOptions(TestOptionsProvider.DisableGenerator("false")).RunGenerators(compilation);
        Assert.Single(driver.GetRunResult().GeneratedTrees);
    }

    [Fact]
    public void EveryTrackedStepRunsForACompleteModel()
    {
        // All sources together exercise every attribute stream: each named step must be recorded.
        var compilation = TestCompilation.Create(Sources.All.Select(c => c.Source).ToArray());
        var result = TestCompilation.CreateDriver().RunGenerators(compilation).GetRunResult().Results[0];

        foreach (string step in PeftTrackingNames.All)
        {
            Assert.True(result.TrackedSteps.ContainsKey(step), $"step {step} was not tracked");
        }
    }

    private static Compilation ReplaceText(Compilation compilation, string path, string oldText, string newText)
    {
        var tree = compilation.SyntaxTrees.Single(t => t.FilePath == path);
        string text = tree.ToString();
        Assert.Contains(oldText, text);
        var changed = tree.WithChangedText(SourceText.From(text.Replace(oldText, newText)));
        return compilation.ReplaceSyntaxTree(tree, changed);
    }

    private static IncrementalStepRunReason[] Reasons(GeneratorRunResult result, string step)
    {
        Assert.True(result.TrackedSteps.ContainsKey(step), $"step {step} was not tracked");
        return result.TrackedSteps[step].SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();
    }

    private static void AssertAllCachedOrUnchanged(GeneratorRunResult result, IEnumerable<string> steps)
    {
        foreach (string step in steps)
        {
            var reasons = Reasons(result, step);
            Assert.NotEmpty(reasons);
            Assert.All(reasons, r => Assert.True(
                r is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged,
                $"step {step} output was {r}"));
        }
    }

    private static void AssertOutputsCached(GeneratorRunResult result)
    {
        var outputs = result.TrackedOutputSteps["SourceOutput"].SelectMany(s => s.Outputs).ToList();
        Assert.NotEmpty(outputs);
        Assert.All(outputs, o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
    }
}
