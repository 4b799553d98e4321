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

    /// <summary>Steps every run of the Attention class goes through: it is parsed once, from its first annotated member
    /// (q_proj, [LoRA]); the [Kronecker] stream's transform for v_proj yields nothing.</summary>
    private static readonly string[] StepsOnLoRAPath =
    {
        PeftTrackingNames.Disabled,
        PeftTrackingNames.ForAttribute("LoRA"),
        PeftTrackingNames.ClassModels,
        PeftTrackingNames.EmittableModels,
        PeftTrackingNames.OutputModels,
    };

    /// <summary>A class whose first annotated member is [Trainable], so that stream parses it.</summary>
    private const string TrainableFirst = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels
        {
            /// <summary>Head first.</summary>
            public sealed partial class HeadFirst : Module<Tensor, Tensor>
            {
                [Trainable] private Module<Tensor, Tensor> head = Linear(8, 2);
                [LoRA(2)] private Module<Tensor, Tensor> proj = Linear(8, 8);

                /// <summary>Builds it.</summary>
                public HeadFirst() : base("HeadFirst") => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => head.call(proj.call(x));
            }
        }
        """;

    [Fact]
    public void AClassIsParsedOnceFromItsFirstAnnotatedTarget()
    {
        var compilation = TestCompilation.Create(Sources.Attention);
        var result = TestCompilation.CreateDriver().RunGenerators(compilation).GetRunResult().Results[0];

        var lora = result.TrackedSteps[PeftTrackingNames.ForAttribute("LoRA")].SelectMany(s => s.Outputs).ToList();
        Assert.Single(lora);
        Assert.False(result.TrackedSteps.TryGetValue(PeftTrackingNames.ForAttribute("Kronecker"), out var kronecker)
            && kronecker.SelectMany(s => s.Outputs).Any(), "the [Kronecker] member's transform parsed the class a second time");
    }

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

    [Theory]
    [InlineData(nameof(Sources.Attention))]
    [InlineData(nameof(Sources.Siblings))] // the sibling groups read from forward stay cached too
    public void EditingACommentInAnotherFileLeavesEveryStepCached(string source)
    {
        var compilation = TestCompilation.Create(source == nameof(Sources.Siblings) ? Sources.Siblings : Sources.Attention, UnrelatedFile);
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

        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(result, PeftTrackingNames.ForAttribute("LoRA")));
        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(result, PeftTrackingNames.ClassModels));
        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(result, PeftTrackingNames.OutputModels));
        Assert.Contains(IncrementalStepRunReason.Modified, result.TrackedOutputSteps["SourceOutput"].SelectMany(s => s.Outputs).Select(o => o.Reason));
        Assert.Contains("Rank: 8,", before);
        Assert.Contains("Rank: 16,", after);
        Assert.DoesNotContain("Rank: 8,", after);
    }

    [Fact]
    public void EditingForwardsCallsChangesTheGroups()
    {
        var compilation = TestCompilation.Create(Sources.Siblings, UnrelatedFile);
        var driver = TestCompilation.CreateDriver().RunGenerators(compilation);
        string before = Generated(driver, "MyModels.Siblings.SelfAttention.Peft.g.cs");

        // k_proj now takes q: q_proj and v_proj still share x.
        var edited = ReplaceText(compilation, "Input0.cs", "var k = this.k_proj.call(x);", "var k = this.k_proj.call(q);");
        driver = driver.RunGenerators(edited);
        var result = driver.GetRunResult().Results[0];
        string after = Generated(driver, "MyModels.Siblings.SelfAttention.Peft.g.cs");

        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(result, PeftTrackingNames.ClassModels));
        Assert.Contains(IncrementalStepRunReason.Modified, result.TrackedOutputSteps["SourceOutput"].SelectMany(s => s.Outputs).Select(o => o.Reason));
        Assert.Contains("new string[] { \"q_proj\", \"k_proj\", \"v_proj\" },", before);
        Assert.Contains("new string[] { \"q_proj\", \"v_proj\" },", after);
        Assert.DoesNotContain("k_proj\", \"v_proj", after);
        // The other classes of the file keep their output.
        Assert.Equal(Generated(driver, "MyModels.Siblings.Mlp.Peft.g.cs"), Generated(TestCompilation.CreateDriver().RunGenerators(compilation), "MyModels.Siblings.Mlp.Peft.g.cs"));
    }

    private static string Generated(GeneratorDriver driver, string hintName)
        => driver.GetRunResult().Results[0].GeneratedSources.Single(s => s.HintName == hintName).SourceText.ToString();

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
        Assert.All(Reasons(result, PeftTrackingNames.ForAttribute("LoRA")), r => Assert.Equal(IncrementalStepRunReason.Cached, r));

        driver = driver.WithUpdatedAnalyzerConfigOptions(TestOptionsProvider.DisableGenerator("false")).RunGenerators(compilation);
        Assert.Single(driver.GetRunResult().GeneratedTrees);
    }

    [Fact]
    public void EveryTrackedStepRunsForACompleteModel()
    {
        // All sources together exercise every attribute stream: each named step must be recorded. Each catalogue method
        // gets a class of its own whose first annotation is that method's attribute, so its stream parses a class.
        var perMethod = Peft.Generators.Methods.MethodCatalogue.All.Select(spec => $$"""
            using Peft;
            using static TorchSharp.torch;
            using static TorchSharp.torch.nn;
            namespace MyModels.PerMethod
            {
                /// <summary>First annotation: [{{spec.Name}}].</summary>
                public sealed partial class {{spec.Name}}First : Module<Tensor, Tensor>
                {
                    [{{spec.Name}}] private Module<Tensor, Tensor> m = {{(spec.LayerKinds.HasFlag(Peft.Generators.Model.LayerKind.Linear) ? "Linear(8, 8)" : spec.LayerKinds.HasFlag(Peft.Generators.Model.LayerKind.Embedding) ? "Embedding(10, 8)" : "LayerNorm(8)")}};
                    /// <summary>Builds it.</summary>
                    public {{spec.Name}}First() : base("x") => InitializePeft();
                    /// <inheritdoc />
                    public override Tensor forward(Tensor x) => m.call(x);
                }
            }
            """);
        var compilation = TestCompilation.Create(Sources.All.Select(c => c.Source).Append(TrainableFirst).Concat(perMethod).ToArray());
        var result = TestCompilation.CreateDriver().RunGenerators(compilation).GetRunResult().Results[0];

        foreach (string step in PeftTrackingNames.All)
        {
            Assert.True(result.TrackedSteps.ContainsKey(step), $"step {step} was not tracked; tracked: {string.Join(", ", result.TrackedSteps.Keys)}");
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
        Assert.True(result.TrackedSteps.ContainsKey(step), $"step {step} was not tracked; tracked: {string.Join(", ", result.TrackedSteps.Keys)}");
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
