using System.Reflection;
using Microsoft.CodeAnalysis;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Tests;

/// <summary>
/// Sibling projections found from <c>forward</c>'s calls or declared with <c>[FuseProjections]</c> (issue 10): which members
/// group, in which order, what the generated <c>ISiblingProjections</c> lists, and what leaves a member or identifier out.
/// </summary>
public class SiblingProjectionTests
{
    [Fact]
    public void GeneratedClassesListTheirGroups_AndStillRun()
    {
        var assembly = Build(Sources.Siblings);

        using var attention = Create(assembly, "MyModels.Siblings.SelfAttention");
        Assert.Equal(new[] { new[] { "q_proj", "k_proj", "v_proj" } }, Groups(attention));
        using var mlp = Create(assembly, "MyModels.Siblings.Mlp");
        Assert.Equal(new[] { new[] { "gate_proj", "up_proj" } }, Groups(mlp));
        using var declared = Create(assembly, "MyModels.Siblings.DeclaredAttention");
        Assert.Equal(new[] { new[] { "query", "key", "value" } }, Groups(declared));

        foreach (var model in new[] { attention, mlp, declared })
        {
            using var y = ((TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>)model).call(TorchSharp.torch.randn(2, 5, 16));
            Assert.Equal(new long[] { 2, 5, 16 }, y.shape);
        }
    }

    [Fact]
    public void ClassWithoutGroupsDoesNotImplementTheInterface()
    {
        using var model = Create(Build(Sources.MultiAdapter), "MyModels.Multi.MultiAdapterModel");
        Assert.IsNotAssignableFrom<ISiblingProjections>(model);
        Assert.DoesNotContain("ISiblingProjections", TestCompilation.Run(TestCompilation.Create(Sources.FreezeTrainable)).Sources
            .Select(s => s.SourceText.ToString()).Aggregate(string.Empty, string.Concat));
    }

    [Theory]
    [InlineData("x = x * 2;")]
    [InlineData("x += 1;")]
    [InlineData("x ??= y;")]
    [InlineData("Reset(out x);")]
    [InlineData("Touch(ref x);")]
    [InlineData("(x, y) = (y, x);")]
    public void AnIdentifierAssignedAfterItsDeclarationFormsNoGroup(string statement)
    {
        var model = Parse(Forward("q.call(x) + k.call(x) + v.call(y)", statement));
        Assert.Empty(PeftModelValidator.EmittedSiblingGroups(model));
        Assert.Contains(model.ForwardCalls, c => c is { Member: "q", Argument: "x", Kind: CallArgumentKind.ReassignedIdentifier });
    }

    [Fact]
    public void AStableIdentifierFormsAGroup_InFirstCallOrder()
    {
        var model = Parse(Forward("k.call(x) + q.call(x) + v.call(y)", "var unrelated = y * 2;"));
        Assert.Equal(new[] { "k", "q" }, Single(model));
    }

    [Fact]
    public void ALocalIsAnInputToo()
    {
        var model = Parse(Forward("q.call(h) + k.call(h) + v.call(h)", "var h = x * 2;"));
        Assert.Equal(new[] { "q", "k", "v" }, Single(model));
    }

    [Fact]
    public void OneMemberIsNoGroup()
    {
        var model = Parse(Forward("q.call(x) + q.call(x) + k.call(y)"));
        Assert.Empty(PeftModelValidator.EmittedSiblingGroups(model));
    }

    [Fact]
    public void AMemberWithoutAdapterIsLeftOut()
    {
        var model = Parse(Forward("q.call(x) + k.call(x) + plain.call(x)"));
        Assert.Equal(new[] { "q", "k" }, Single(model));
    }

    [Fact]
    public void AMemberCalledWithTwoIdentifiersIsLeftOut()
    {
        var model = Parse(Forward("q.call(x) + k.call(x) + v.call(x) + v.call(y)"));
        Assert.Equal(new[] { "q", "k" }, Single(model));
    }

    [Fact]
    public void ExpressionsAndFieldsAreNoInputs()
    {
        var model = Parse(Forward("q.call(x * 2) + k.call(x * 2) + v.call(bias) + q2.call(bias)"));
        Assert.Empty(PeftModelValidator.EmittedSiblingGroups(model));
        Assert.Contains(model.ForwardCalls, c => c is { Member: "q", Argument: "x*2", Kind: CallArgumentKind.Expression });
    }

    [Fact]
    public void ALocalNamedLikeAMemberShadowsIt()
    {
        var model = Parse(Forward("q.call(x) + k.call(x)", "var q = v;"));
        Assert.Empty(PeftModelValidator.EmittedSiblingGroups(model));
        Assert.DoesNotContain(model.ForwardCalls, c => c.Member == "q");
    }

    [Fact]
    public void AForwardWithAnotherSignatureIsReadToo()
    {
        // Modules whose forward takes a mask or a cache name it Forward (Llama's and BERT's attention).
        var model = Parse(Forward("x", extraMembers: "public Tensor Forward(Tensor h, Tensor mask) => q.call(h) + k.call(h) + mask;"));
        Assert.Equal(new[] { "q", "k" }, Single(model));
    }

    [Fact]
    public void EachForwardOverloadHasItsOwnIdentifiers()
    {
        var model = Parse(Forward("q.call(x) + k.call(y)", extraMembers: "public Tensor forward(Tensor x, Tensor y, Tensor z) => k.call(x);"));
        Assert.Empty(PeftModelValidator.EmittedSiblingGroups(model));
    }

    [Fact]
    public void DeclaredGroupsFollowForwardsOrder_AndTakeTheirMembersOutOfAutomaticGroups()
    {
        var model = Parse(Forward("v.call(x) + q.call(x) + k.call(x) + q2.call(x)", fuse: new() { ["q"] = "qv", ["v"] = "qv" }));
        var groups = PeftModelValidator.EmittedSiblingGroups(model);
        Assert.Equal(new[] { new[] { "v", "q" }, new[] { "k", "q2" } }, groups.Select(g => g.Members.ToArray()));
        Assert.Equal(new[] { SiblingGroupKind.Declared, SiblingGroupKind.Automatic }, groups.Select(g => g.Kind));
    }

    [Fact]
    public void ADeclaredGroupThatCannotApplyIsNotEmitted()
    {
        var model = Parse(Forward("q.call(x) + k.call(y)", fuse: new() { ["q"] = "qk", ["k"] = "qk" }));
        Assert.Empty(PeftModelValidator.EmittedSiblingGroups(model));
        Assert.Contains(PeftModelValidator.Validate(model, null), p => p.Id == PeftDiagnosticIds.SiblingGroupCannotApply);
    }

    [Fact]
    public void ADerivedClassOrAHandWrittenImplementationGetsNone()
    {
        var derived = TestCompilation.Run(TestCompilation.Create(Sources.Inheritance.Replace(
            "public override Tensor forward(Tensor x) => norm.call(outer.call(base.forward(x)));",
            "public override Tensor forward(Tensor x) => norm.call(outer.call(x) + outer2.call(x));").Replace(
            "[Freeze] private Module<Tensor, Tensor> norm = LayerNorm(8);",
            "[Freeze] private Module<Tensor, Tensor> norm = LayerNorm(8);\n[LoRA] private Module<Tensor, Tensor> outer2 = Linear(8, 8);")));
        Assert.DoesNotContain("ISiblingProjections", derived.Source("MyModels.Inheritance.DerivedBlock.Peft.g.cs"));
        Assert.Empty(TestCompilation.WarningsAndErrors(derived.Output));

        string byHand = Forward("q.call(x) + k.call(x)", baseList: ", ISiblingProjections",
            extraMembers: "public System.Collections.Generic.IReadOnlyList<System.Collections.Generic.IReadOnlyList<string>> SiblingProjections => new[] { new[] { \"q\", \"k\" } };");
        Assert.True(Parse(byHand).SiblingProjectionsByHand);
        var run = TestCompilation.Run(TestCompilation.Create(byHand));
        Assert.DoesNotContain("ISiblingProjections", run.Sources.Single().SourceText.ToString());
        Assert.Empty(TestCompilation.WarningsAndErrors(run.Output).Where(d => d.Id != "CS1591"));
    }

    [Fact]
    public void TheAnalyzersViewWithTheGeneratedFile_IsTheGeneratorsView()
    {
        // The analyzers parse the class in a compilation that holds the generated ISiblingProjections: that file is not a
        // hand-written implementation, so they report the same groups (PEFT0051) the generator emitted.
        var run = TestCompilation.Run(TestCompilation.Create(Sources.Siblings));
        var type = run.Output.GetTypeByMetadataName("MyModels.Siblings.SelfAttention")!;
        Assert.Contains(type.AllInterfaces, i => i.Name == "ISiblingProjections");
        var model = PeftParser.Parse(type, run.Output, CancellationToken.None)!;

        Assert.False(model.SiblingProjectionsByHand);
        Assert.Equal(new[] { "q_proj", "k_proj", "v_proj" }, Single(model));
        var info = Assert.Single(PeftModelValidator.Validate(model, null), p => p.Id == PeftDiagnosticIds.SiblingProjections);
        Assert.Equal(new[] { "'q_proj', 'k_proj', 'v_proj'", "SelfAttention", "x" }, info.MessageArgs);
    }

    private const string AdaptableBlock = """
        #pragma warning disable CS1591, CS8618, CS0169
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace Checks
        {
            [Adaptable]
            public sealed partial class Block : Module<Tensor, Tensor>
            {
                private Module<Tensor, Tensor> q = Linear(8, 8);
                private Module<Tensor, Tensor> k = Linear(8, 8);
                private Module<Tensor, Tensor> v = Linear(8, 8);
                private readonly Module<Tensor, Tensor> fixedLayer = Linear(8, 8);
                [FuseProjections("norms")] private Module<Tensor, Tensor> n1 = LayerNorm(8);
                [FuseProjections("norms")] private Module<Tensor, Tensor> n2 = LayerNorm(8);

                public Block() : base("Block") => InitializePeft();

                public override Tensor forward(Tensor x) => q.call(x) + k.call(x) + v.call(x) + fixedLayer.call(x) + n1.call(x) + n2.call(x);
            }
        }
        """;

    [Fact]
    public void AnAdaptableClassGroupsTheLinearMembersConfigurationCanAdapt_AndTheRunTimeLinksTheAdaptedOnes()
    {
        var model = Parse(AdaptableBlock);
        Assert.Equal(new[] { "q", "k", "v" }, Single(model)); // not the readonly layer, not the norms
        var problems = PeftModelValidator.Validate(model, null);
        Assert.Equal(2, problems.Count(p => p.Id == PeftDiagnosticIds.SiblingGroupCannotApply)); // the norms: not Linear
        Assert.Contains(problems, p => p.Id == PeftDiagnosticIds.SiblingGroupCannotApply && p.MessageArgs.Any(a => a.Contains("configuration targeting", StringComparison.Ordinal)));

        using var block = Create(Build(AdaptableBlock), "Checks.Block");
        Assert.Equal(new[] { new[] { "q", "k", "v" } }, Groups(block));
        block.ApplyTargets(new PeftTargets(TargetModules.Names("q", "v"), new LoRAOptions(Rank: 2)));
        var report = block.FuseSiblingProjections();
        Assert.Equal(new[] { "q", "v" }, Assert.Single(report.Linked).Members);
    }

    /// <summary>A class with adapted Linear(8, 8) members q, k, v, q2, a plain one and a field, and the given forward.</summary>
    private static string Forward(
        string expression, string statement = "", string extraMembers = "", Dictionary<string, string>? fuse = null, string baseList = "")
    {
        string Fuse(string member) => fuse is not null && fuse.TryGetValue(member, out var group) ? $", FuseProjections(\"{group}\")" : string.Empty;
        return $$"""
            #pragma warning disable CS1591, CS8618, CS0169
            using Peft;
            using static TorchSharp.torch;
            using static TorchSharp.torch.nn;

            namespace Checks
            {
                public sealed partial class Block : Module<Tensor, Tensor>{{baseList}}
                {
                    [LoRA{{Fuse("q")}}] private Module<Tensor, Tensor> q = Linear(8, 8);
                    [LoRA{{Fuse("k")}}] private Module<Tensor, Tensor> k = Linear(8, 8);
                    [LoRA{{Fuse("v")}}] private Module<Tensor, Tensor> v = Linear(8, 8);
                    [LoRA{{Fuse("q2")}}] private Module<Tensor, Tensor> q2 = Linear(8, 8);
                    private Module<Tensor, Tensor> plain = Linear(8, 8);
                    private Tensor bias = zeros(8);

                    public Block() : base("Block") => InitializePeft();

                    public override Tensor forward(Tensor x)
                    {
                        var y = x + 1;
                        {{statement}}
                        return {{expression}};
                    }

                    {{extraMembers}}

                    private static void Reset(out Tensor t) => t = zeros(8);
                    private static void Touch(ref Tensor t) => t = t + 1;
                }
            }
            """;
    }

    private static string[] Single(PeftClassModel model)
        => Assert.Single(PeftModelValidator.EmittedSiblingGroups(model)).Members.ToArray();

    private static PeftClassModel Parse(string source)
    {
        var compilation = TestCompilation.Create(source);
        Assert.DoesNotContain(compilation.GetDiagnostics(), d => d.Severity == DiagnosticSeverity.Error && d.Id != "CS0103");
        var type = compilation.GetTypeByMetadataName("Checks.Block")!;
        return PeftParser.Parse(type, compilation, CancellationToken.None)!;
    }

    private static Assembly Build(string source)
    {
        var run = TestCompilation.Run(TestCompilation.Create(source));
        using var image = new MemoryStream();
        var emit = run.Output.Emit(image);
        Assert.True(emit.Success, TestCompilation.Describe(emit.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
        return Assembly.Load(image.ToArray());
    }

    private static TorchSharp.torch.nn.Module Create(Assembly assembly, string typeName)
        => (TorchSharp.torch.nn.Module)Activator.CreateInstance(assembly.GetType(typeName, throwOnError: true)!)!;

    private static string[][] Groups(object model)
        => Assert.IsAssignableFrom<ISiblingProjections>(model).SiblingProjections.Select(g => g.ToArray()).ToArray();
}
