using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0007, 0008, 0009, 0012, 0013, 0015, 0016: declarations the generator cannot wire or PEFT cannot express.</summary>
public class DeclarationDiagnosticsTests
{
    [Fact]
    public Task NonPartialClass_ReportsPEFT0007OnTheClassName()
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed class {|#0:Attention|} : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) { }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0007").WithLocation(0).WithArguments("Attention"));

    [Fact]
    public Task PartialClassInNonPartialContainingType_ReportsPEFT0007()
        => PeftAnalyzerTest.VerifyAsync(
            """
            public static class Blocks
            {
                public sealed partial class {|#0:Mlp|} : Module<Tensor, Tensor>
                {
                    [Freeze] private Module<Tensor, Tensor> fc = Linear(64, 64);

                    public Mlp() : base(nameof(Mlp)) { }

                    public override Tensor forward(Tensor x) => fc.call(x);
                }
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0007").WithLocation(0).WithArguments("Blocks.Mlp"));

    [Fact]
    public Task PartialChainAndClassesWithoutPeftAttributes_AreAccepted()
        => PeftAnalyzerTest.VerifyAsync("""
            public static partial class Blocks
            {
                public sealed partial class Mlp : Module<Tensor, Tensor>
                {
                    [Trainable] private Module<Tensor, Tensor> fc = Linear(64, 64);

                    public Mlp() : base(nameof(Mlp)) { }

                    public override Tensor forward(Tensor x) => fc.call(x);
                }

                public sealed class Plain : Module<Tensor, Tensor>
                {
                    private readonly Module<Tensor, Tensor> fc = Linear(64, 64);

                    public Plain() : base(nameof(Plain)) => RegisterComponents();

                    public override Tensor forward(Tensor x) => fc.call(x);
                }
            }
            """);

    [Fact]
    public Task ClassNotDerivingFromModule_ReportsPEFT0015()
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Settings|}
            {
                [LoRA] public Module<Tensor, Tensor>? Layer { get; set; }
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0015").WithLocation(0)
                .WithMessage("'Settings' has PEFT attributes but does not derive from TorchSharp.torch.nn.Module"));

    [Fact]
    public Task ClassDerivingFromModuleIndirectly_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync("""
            public abstract class Block : Module<Tensor, Tensor>
            {
                protected Block(string name) : base(name) { }
            }

            public sealed partial class Attention : Block
            {
                [LoRA] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) => InitializePeft();

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """);

    [Fact]
    public Task FreezeAndAdapterOnOneMember_ReportsPEFT0008OnTheAdapter()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [Freeze, {|#0:LoRA(8)|}] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0008").WithLocation(0)
                .WithMessage("[LoRA] on 'q_proj' can never be trained: the member is marked [Freeze]; remove the adapter or the [Freeze]"));

    [Fact]
    public Task AdapterInsideFrozenClass_ReportsPEFT0008()
        => PeftAnalyzerTest.VerifyAsync(
            """
            [Freeze]
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [{|#0:Kronecker(4)|}] private Module<Tensor, Tensor> v_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) => InitializePeft();

                public override Tensor forward(Tensor x) => v_proj.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0008").WithLocation(0)
                .WithArguments("Kronecker", "v_proj", "class 'Attention' is marked [Freeze]"));

    [Fact]
    public Task FreezeOnAnotherMember_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [Freeze] private Module<Tensor, Tensor> k_proj = Linear(64, 64);
            [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [Trainable] private Module<Tensor, Tensor> head = Linear(64, 2);
            """));

    [Fact]
    public Task TwoDefaultNamedAdaptersOnOneMember_ReportsPEFT0009OnTheSecond()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(8)]
                [{|#0:LoRA(16)|}]
                private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0009").WithLocation(0)
                .WithMessage("'q_proj' already has an adapter named 'default'; give each adapter on a member its own Name"));

    [Fact]
    public Task TwoAdaptersWithOneExplicitName_ReportsPEFT0009OnTheNameArgument()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(8, Name = "task"), LoRA(4, {|#0:Name = "task"|})] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0009").WithLocation(0).WithArguments("q_proj", "task"));

    [Fact]
    public Task DistinctNamesOnOneMember_AndOneNameAcrossMembers_AreAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [LoRA(8, Name = "a"), LoRA(4, Name = "b")] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [LoRA(8, Name = "a")] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            """));

    [Fact]
    public Task ReadonlyFieldAndGetOnlyProperty_ReportPEFT0012OnTheMemberName()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(8)] private readonly Module<Tensor, Tensor> {|#0:q_proj|} = Linear(64, 64);
                [LoRA(8)] public Module<Tensor, Tensor> {|#1:V|} { get; } = Linear(64, 64);
                [LoRA(8)] public Module<Tensor, Tensor> {|#2:K|} { get; init; } = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0012").WithLocation(0)
                .WithMessage("'q_proj' has an adapter but is a readonly field; the generated InitializePeft() must replace it with the adapter wrapper"),
            PeftAnalyzerTest.Diagnostic("PEFT0012").WithLocation(1).WithArguments("V", "a property without a setter"),
            PeftAnalyzerTest.Diagnostic("PEFT0012").WithLocation(2).WithArguments("K", "a property without a setter"));

    [Fact]
    public Task ReadonlyMemberWithoutAdapter_AndPrivateSetter_AreAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [Freeze] private readonly Module<Tensor, Tensor> k_proj = Linear(64, 64);
            [LoRA(8)] public Module<Tensor, Tensor> V { get; private set; } = Linear(64, 64);
            """));

    [Fact]
    public Task ConstructorsWithoutInitializePeft_ReportPEFT0013OnTheClassListingThem()
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class {|#0:Attention|} : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public {|#1:Attention|}() : base(nameof(Attention)) { }

                public Attention(int seed) : this() { }

                public {|#2:Attention|}(string name, long dim) : base(name) => q_proj = Linear(dim, dim);

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0013").WithLocation(0).WithLocation(1).WithLocation(2)
                .WithMessage("'Attention' declares adapters, but these constructors never call InitializePeft(), so the instances they build have no adapters: Attention(), Attention(string, long)"));

    [Fact]
    public Task InitializePeftCalledOrChained_OrNoAdapters_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync("""
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention))
                {
                    this.InitializePeft();
                }

                public Attention(int seed) : this() { }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }

            public sealed partial class Head : Module<Tensor, Tensor>
            {
                [Trainable] private Module<Tensor, Tensor> fc = Linear(64, 2);

                public Head() : base(nameof(Head)) { }

                public override Tensor forward(Tensor x) => fc.call(x);
            }
            """);

    [Fact]
    public Task EditorConfigSeverityNone_SilencesPEFT0013()
    {
        var test = new PeftAnalyzerTest
        {
            TestCode = Usings + """
                public sealed partial class Attention : Module<Tensor, Tensor>
                {
                    [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                    public Attention() : base(nameof(Attention)) { }

                    public override Tensor forward(Tensor x) => q_proj.call(x);
                }
                """,
        };
        test.TestState.AnalyzerConfigFiles.Add(("/.globalconfig", """
            is_global = true
            dotnet_diagnostic.PEFT0013.severity = none

            """));
        return test.RunAsync();
    }

    [Fact]
    public Task OneNameWithTwoMethodsAcrossMembers_ReportsPEFT0016()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(8, Name = "task")] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                [Kronecker(4, {|#0:Name = "task"|})] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
                [PromptTune(10)] private Module<Tensor, Tensor> embed = Embedding(100, 64);
                [{|#1:LoRA(8)|}] private Module<Tensor, Tensor> o_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0016").WithLocation(0)
                .WithMessage("Adapter 'task' is declared as [Kronecker] here but as [LoRA] on 'q_proj'; a PEFT adapter has one peft_type, so give them different Name values"),
            PeftAnalyzerTest.Diagnostic("PEFT0016").WithLocation(1).WithArguments("default", "LoRA", "PromptTune", "embed"));

    [Fact]
    public Task OneNameWithOneMethodAcrossMembers_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [Kronecker(4)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [Kronecker(4)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);
            [LoRA(8, Name = "lora")] private Module<Tensor, Tensor> o_proj = Linear(64, 64);
            """));

    [Fact]
    public async Task GeneratedCode_IsNotAnalyzed()
    {
        var test = new PeftAnalyzerTest();
        test.TestState.Sources.Add(("/0/Model.g.cs", "// <auto-generated/>\n" + Usings + Module("""
            [LoRA(rank: 0)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            """)));
        await test.RunAsync();
    }
}
