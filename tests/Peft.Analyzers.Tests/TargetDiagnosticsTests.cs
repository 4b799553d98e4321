using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0017: linear members of an [Adaptable] class that configuration targeting could not adapt.</summary>
public class TargetDiagnosticsTests
{
    [Fact]
    public Task LinearTypedAndReadonlyMembers_ReportPEFT0017()
        => PeftAnalyzerTest.VerifyAsync(
            """
            [Adaptable]
            public sealed partial class Mlp : Module<Tensor, Tensor>
            {
                private Module<Tensor, Tensor> up = Linear(64, 256);
                private {|#0:TorchSharp.Modules.Linear|} down = Linear(256, 64);
                private readonly Module<Tensor, Tensor> {|#1:gate|} = Linear(64, 256);
                private Module<Tensor, Tensor> act = ReLU();

                public Mlp() : base(nameof(Mlp)) => InitializePeft();

                public override Tensor forward(Tensor x) => down.call(act.call(up.call(x)) * gate.call(x));
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0017").WithLocation(0).WithArguments("down", "Mlp",
                "member 'down' is declared as 'TorchSharp.Modules.Linear', which cannot hold the adapter wrapper (declare it as Module<Tensor, Tensor>)"),
            PeftAnalyzerTest.Diagnostic("PEFT0017").WithLocation(1).WithArguments("gate", "Mlp",
                "member 'gate' is a readonly field, so the wrapper cannot be stored in it (make it writable)"));

    [Fact]
    public Task ClassesWithoutAdaptable_KeepUntargetableMembersWithoutDiagnostics()
        => PeftAnalyzerTest.VerifyAsync("""
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                private readonly TorchSharp.Modules.Linear o_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) => InitializePeft();

                public override Tensor forward(Tensor x) => o_proj.call(q_proj.call(x));
            }
            """);

    [Fact]
    public Task AdaptableNonPartialClass_ReportsPEFT0007()
        => PeftAnalyzerTest.VerifyAsync(
            """
            [Adaptable]
            public sealed class {|#0:Mlp|} : Module<Tensor, Tensor>
            {
                private Module<Tensor, Tensor> up = Linear(64, 64);

                public Mlp() : base(nameof(Mlp)) => RegisterComponents();

                public override Tensor forward(Tensor x) => up.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0007").WithLocation(0).WithArguments("Mlp"));
}

/// <summary>Runs <see cref="TargetNamesAnalyzer"/> (with the InitializePeft stub generator).</summary>
internal sealed class TargetNamesTest : Microsoft.CodeAnalysis.CSharp.Testing.CSharpAnalyzerTest<TargetNamesAnalyzer, Microsoft.CodeAnalysis.Testing.DefaultVerifier>
{
    public TargetNamesTest()
    {
        ReferenceAssemblies = TestReferences.NoPackages;
        TestState.AdditionalReferences.AddRange(TestReferences.All);
        TestBehaviors |= Microsoft.CodeAnalysis.Testing.TestBehaviors.SkipGeneratedSourcesCheck;
    }

    protected override IEnumerable<Type> GetSourceGenerators() => new[] { typeof(InitializePeftStubGenerator) };

    public static Task VerifyAsync(string source, params Microsoft.CodeAnalysis.Testing.DiagnosticResult[] expected)
    {
        var test = new TargetNamesTest { TestCode = PeftTestSetup.Usings + "using TorchSharp.Modules;\n" + Model + source };
        test.ExpectedDiagnostics.AddRange(expected);
        return test.RunAsync();
    }

    /// <summary>A root with a hand-registered ModuleList of generated blocks, an [Adaptable] mlp and a head.</summary>
    private const string Model = """
        public sealed partial class Attn : Module<Tensor, Tensor>
        {
            [LoRA] private Module<Tensor, Tensor> q_proj = Linear(8, 8);
            private Module<Tensor, Tensor> k_proj = Linear(8, 8);
            public Attn() : base(nameof(Attn)) => InitializePeft();
            public override Tensor forward(Tensor x) => k_proj.call(q_proj.call(x));
        }

        [Adaptable]
        public sealed partial class Mlp : Module<Tensor, Tensor>
        {
            private Module<Tensor, Tensor> up_proj = Linear(8, 16);
            private Module<Tensor, Tensor> down_proj = Linear(16, 8);
            public Mlp() : base(nameof(Mlp)) => InitializePeft();
            public override Tensor forward(Tensor x) => down_proj.call(up_proj.call(x));
        }

        public sealed class Layer : Module<Tensor, Tensor>
        {
            private readonly Attn self_attn = new Attn();
            private readonly Mlp mlp = new Mlp();
            public Layer() : base(nameof(Layer)) { register_module(nameof(self_attn), self_attn); register_module(nameof(mlp), mlp); }
            public override Tensor forward(Tensor x) => mlp.call(self_attn.call(x));
        }

        public sealed class Net : Module<Tensor, Tensor>
        {
            private readonly ModuleList<Layer> layers = new ModuleList<Layer>(new Layer(), new Layer());
            private readonly Linear lm_head = Linear(8, 4);
            public Net() : base(nameof(Net)) => RegisterComponents();
            public override Tensor forward(Tensor x) => lm_head.call(x);
        }

        public sealed class Opaque : Module<Tensor, Tensor>
        {
            private readonly Module<Tensor, Tensor> inner;
            public Opaque(Module<Tensor, Tensor> inner) : base(nameof(Opaque)) { this.inner = inner; RegisterComponents(); }
            public override Tensor forward(Tensor x) => inner.call(x);
        }

        """;

    public static Microsoft.CodeAnalysis.Testing.DiagnosticResult Diagnostic() => new(Peft.Analyzers.Diagnostics.DiagnosticDescriptors.UnknownTargetName);
}

/// <summary>PEFT0018: constant target names checked against the module tree read from source.</summary>
public class TargetNamesDiagnosticsTests
{
    [Fact]
    public Task KnownNamesSuffixesAndIndexesAreAccepted()
        => TargetNamesTest.VerifyAsync("""
            public static class Use
            {
                public static void Run(Net net)
                {
                    net.ApplyTargets(new PeftTargets(TargetModules.Names("q_proj", "self_attn.k_proj", "layers.1.mlp.up_proj", "lm_head", "mlp"))
                    {
                        Exclude = TargetModules.Names("layers.0.self_attn.q_proj"),
                        AdapterName = "x",
                    });
                    net.ResolveTargets(new PeftTargets(TargetModules.Regex("nothing.*")));
                }
            }
            """);

    [Fact]
    public Task MisspelledTargetAndExcludeAreReportedWithSuggestions()
        => TargetNamesTest.VerifyAsync("""
            public static class Use
            {
                public static void Run(Net net)
                {
                    net.ApplyTargets(new PeftTargets(TargetModules.Names("q_proj", {|#0:"k_prj"|}, {|#1:"attn.q_proj"|}))
                    {
                        Exclude = TargetModules.Names({|#2:"down_projj"|}),
                    });
                    var targets = new PeftTargets(TargetModules.AllLinear);
                    net.ResolveTargets(targets with { Exclude = TargetModules.Names({|#3:"layers.x.mlp"|}) });
                }
            }
            """,
            TargetNamesTest.Diagnostic().WithLocation(0).WithArguments("target_modules", "k_prj", "Net", " Did you mean 'k_proj'?"),
            TargetNamesTest.Diagnostic().WithLocation(1).WithArguments("target_modules", "attn.q_proj", "Net", " Did you mean 'q_proj'?"),
            TargetNamesTest.Diagnostic().WithLocation(2).WithArguments("exclude_modules", "down_projj", "Net", " Did you mean 'down_proj'?"),
            TargetNamesTest.Diagnostic().WithLocation(3).WithArguments("exclude_modules", "layers.x.mlp", "Net", " Did you mean 'mlp'?"));

    [Fact]
    public Task InvisibleSubtreesAreLeftToTheRunTimeCheck()
        => TargetNamesTest.VerifyAsync("""
            public static class Use
            {
                public static void Run(Opaque opaque, Module<Tensor, Tensor> any)
                {
                    opaque.ApplyTargets(new PeftTargets(TargetModules.Names("whatever")));
                    any.ApplyTargets(new PeftTargets(TargetModules.Names("whatever")));
                }
            }
            """);

    [Fact]
    public Task NonSealedReceiversAndMembersAreLeftToTheRunTimeCheck()
        // BaseNet is not sealed: the object may be a DerivedNet with an 'extra' module, so 'extra' is not reported
        // through a BaseNet reference (nor through a Holder member typed BaseNet); created with new, BaseNet is exact.
        => TargetNamesTest.VerifyAsync("""
            public partial class BaseNet : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> q_proj = Linear(8, 8);
                public BaseNet() : base(nameof(BaseNet)) => InitializePeft();
                public override Tensor forward(Tensor x) => q_proj.call(x);
            }

            public sealed class DerivedNet : BaseNet
            {
                private readonly Module<Tensor, Tensor> extra = Linear(8, 8);
                public DerivedNet() => register_module(nameof(extra), extra);
            }

            public sealed partial class Holder : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> proj = Linear(8, 8);
                private BaseNet inner = new DerivedNet();
                public Holder() : base(nameof(Holder)) => InitializePeft();
                public override Tensor forward(Tensor x) => inner.call(proj.call(x));
            }

            public static class Use
            {
                public static void Run(BaseNet net, Holder holder)
                {
                    net.ApplyTargets(new PeftTargets(TargetModules.Names("extra")));
                    holder.ApplyTargets(new PeftTargets(TargetModules.Names("inner.extra")));
                    new BaseNet().ApplyTargets(new PeftTargets(TargetModules.Names({|#0:"extra"|})));
                }
            }
            """,
            TargetNamesTest.Diagnostic().WithLocation(0).WithArguments("target_modules", "extra", "BaseNet", ""));
}
