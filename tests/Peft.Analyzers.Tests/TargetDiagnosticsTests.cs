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
                "member 'down' is declared as 'TorchSharp.Modules.Linear', which cannot hold the AdaptedLinear wrapper (declare it as Module<Tensor, Tensor>)"),
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
