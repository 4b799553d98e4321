using Peft.Analyzers.Tests.Infrastructure;

namespace Peft.Analyzers.Tests;

/// <summary>
/// PEFT0051 (a sibling group found in forward, information) and PEFT0052 (a declared [FuseProjections] group that cannot
/// apply), reported by <see cref="PeftAttributeAnalyzer"/> from the validator's one copy of the rules, at the first call in
/// forward or at the member's [FuseProjections].
/// </summary>
public class SiblingDiagnosticsTests
{
    /// <summary>A partial module with the given members and forward body (its parameter is x; y is a second input).</summary>
    private static string Class(string members, string forwardBody, string name = "Attention", string baseType = "Module<Tensor, Tensor>") => $$"""
        public partial class {{name}} : {{baseType}}
        {
        {{members}}

            public {{name}}() : base(nameof({{name}})) => InitializePeft();

            public override Tensor forward(Tensor x)
            {
                var y = x * 2;
        {{forwardBody}}
            }
        }
        """;

    private const string Qkv = """
            [LoRA] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
            [LoRA] private Module<Tensor, Tensor> k_proj = Linear(16, 8);
            [DoRA(Name = "magnitude")] private Module<Tensor, Tensor> v_proj = Linear(16, 8);
            [LoRA] private Module<Tensor, Tensor> o_proj = Linear(16, 16);
        """;

    [Fact]
    public Task MembersCalledWithOneInput_ReportPEFT0051AtTheFirstCall()
        => PeftAnalyzerTest.VerifyAsync(
            Class(Qkv, """
                var q = {|#0:q_proj.call(x)|};
                var k = this.k_proj.call(x);
                var v = v_proj.forward(x);
                return o_proj.call(q + cat(new[] { k, v }, -1));
        """),
            PeftAnalyzerTest.Diagnostic("PEFT0051").WithLocation(0).WithArguments("'q_proj', 'k_proj', 'v_proj'", "Attention", "x")
                .WithMessage("Members 'q_proj', 'k_proj', 'v_proj' of 'Attention' take the same input 'x' in forward; model.FuseSiblingProjections() runs them as one product"));

    [Fact]
    public Task MlpGateAndUp_ReportPEFT0051_DownIsNotPart()
        => PeftAnalyzerTest.VerifyAsync(
            Class("""
                [LoRA] private Module<Tensor, Tensor> gate_proj = Linear(16, 32);
                [LoRA] private Module<Tensor, Tensor> up_proj = Linear(16, 32);
                [LoRA] private Module<Tensor, Tensor> down_proj = Linear(32, 16);
            """, """
                return down_proj.call(functional.silu({|#0:gate_proj.call(x)|}) * up_proj.call(x)) + 0 * y;
        """, name: "Mlp"),
            PeftAnalyzerTest.Diagnostic("PEFT0051").WithLocation(0).WithArguments("'gate_proj', 'up_proj'", "Mlp", "x"));

    [Theory]
    [InlineData("x = x + 1;\n        return q_proj.call(x) + k_proj.call(x);")]          // reassigned
    [InlineData("Reset(out x);\n        return q_proj.call(x) + k_proj.call(x);")]      // out
    [InlineData("return q_proj.call(x) + q_proj.call(x) + k_proj.call(y);")]             // one member per input
    [InlineData("return q_proj.call(x) + k_proj.call(x) + k_proj.call(y);")]             // k_proj takes two inputs
    [InlineData("return q_proj.call(x + 1) + k_proj.call(x + 1);")]                      // not an identifier
    [InlineData("return q_proj.call(x) + plain.call(x) + k_proj.call(y);")]              // plain has no adapter
    public Task NoGroup_NoPEFT0051(string forwardBody)
        => PeftAnalyzerTest.VerifyAsync(Class("""
                [LoRA] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [LoRA] private Module<Tensor, Tensor> k_proj = Linear(16, 16);
                private Module<Tensor, Tensor> plain = Linear(16, 16);

                private static void Reset(out Tensor t) => t = zeros(16);
            """, "        " + forwardBody));

    [Fact]
    public Task AClassThatGetsNoGeneratedCode_ReportsItsErrorButNoPEFT0051()
        => PeftAnalyzerTest.VerifyAsync(
            Class(Qkv, "        return o_proj.call(q_proj.call(x) + k_proj.call(x).repeat(1, 2));", name: "{|#0:Attention|}")
                .Replace("public partial class", "public class").Replace("public {|#0:Attention|}()", "public Attention()")
                .Replace("base(nameof({|#0:Attention|}))", "base(nameof(Attention))").Replace(" => InitializePeft();", " { }"),
            PeftAnalyzerTest.Diagnostic("PEFT0007").WithLocation(0).WithArguments("Attention"));

    [Fact]
    public Task AValidDeclaredGroup_ReportsNothing_EvenWhenForwardNeverCallsIt()
        => PeftAnalyzerTest.VerifyAsync(Class("""
                [LoRA, FuseProjections("qkv")] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [LoRA, FuseProjections("qkv")] private Module<Tensor, Tensor> k_proj = Linear(16, 16);

                private Tensor Project(Tensor h) => q_proj.call(h) + k_proj.call(h);
            """, "        return Project(x) + y;"));

    [Fact]
    public Task DeclaredGroupWithOneMember_ReportsPEFT0052OnTheAttribute()
        => PeftAnalyzerTest.VerifyAsync(
            Class("""
                [LoRA, {|#0:FuseProjections("qkv")|}] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [LoRA, FuseProjections("other")] private Module<Tensor, Tensor> k_proj = Linear(16, 16);
                [LoRA, FuseProjections("other")] private Module<Tensor, Tensor> v_proj = Linear(16, 16);
            """, "        return q_proj.call(x) + k_proj.call(y) + v_proj.call(y);"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(0).WithArguments("qkv", "q_proj",
                "no other member has this group name; give the members that take the same input in forward the same name, or remove the attribute")
                .WithMessage("[FuseProjections(\"qkv\")] on 'q_proj' cannot apply: no other member has this group name; give the members that take the same input in forward the same name, or remove the attribute"));

    [Fact]
    public Task FuseProjectionsInAClassWithNothingGenerated_ReportsPEFT0052_InsteadOfBeingIgnored()
    {
        const string reason = "the class 'Plain' declares no adapter and is not [Adaptable], so no code is generated for it and nothing lists the group; "
            + "put an adapter attribute (such as [LoRA]) on its projections or [Adaptable] on the class, or remove [FuseProjections]";
        return PeftAnalyzerTest.VerifyAsync(
            """
            public class Plain : Module<Tensor, Tensor>
            {
                [{|#0:FuseProjections("qk")|}] private Module<Tensor, Tensor> q = Linear(16, 16);
                [{|#1:FuseProjections("qk")|}] private Module<Tensor, Tensor> k = Linear(16, 16);

                public Plain() : base(nameof(Plain)) => RegisterComponents();

                public override Tensor forward(Tensor x) => q.call(x) + k.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(0).WithArguments("qk", "q", reason),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(1).WithArguments("qk", "k", reason));
    }

    [Fact]
    public Task DeclaredMemberWithoutAdapter_OrNotALinear_ReportsPEFT0052()
        => PeftAnalyzerTest.VerifyAsync(
            Class("""
                [LoRA, FuseProjections("g")] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [{|#0:FuseProjections("g")|}] private Module<Tensor, Tensor> k_proj = Linear(16, 16);
                [BitFit(Name = "bias"), {|#1:FuseProjections("g")|}] private Module<Tensor, Tensor> norm = LayerNorm(16);
                [PromptTune(4, Name = "prompt"), {|#2:FuseProjections("g")|}] private Module<Tensor, Tensor> prompt = Embedding(10, 16);
            """, "        return q_proj.call(x) + k_proj.call(x);"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(0).WithArguments("g", "k_proj",
                "it has no adapter attribute, so it is not wrapped into an AdaptedLinear; add one (such as [LoRA]) or remove [FuseProjections]"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(1).WithArguments("g", "norm",
                "it is not built with Linear(...); only adapted Linear layers run as one product, so remove [FuseProjections]"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(2).WithArguments("g", "prompt",
                "its adapter [PromptTune] does not adapt linear layers; only adapted Linear layers run as one product, so remove [FuseProjections]"));

    [Fact]
    public Task DeclaredMembersWithDifferentInFeatures_ReportPEFT0052()
        => PeftAnalyzerTest.VerifyAsync(
            Class("""
                [LoRA, FuseProjections("qk")] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [LoRA, {|#0:FuseProjections("qk")|}] private Module<Tensor, Tensor> k_proj = Linear(8, 16);
            """, "        return q_proj.call(x) + {|#1:k_proj.call(x.narrow(-1, 0, 8))|};"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(0).WithArguments("qk", "k_proj",
                "it is a Linear with 8 input features but 'q_proj' has 16; members of one product take one input, so give them the same in_features or different group names"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(1).WithArguments("qk", "k_proj",
                "forward passes it 'x.narrow(-1,0,8)' but passes 'x' to 'q_proj'; only members called with the same input run as one product, so pass them the same tensor or remove the member from the group"));

    [Fact]
    public Task DeclaredMembersWithDifferentConstantDTypes_ReportPEFT0052()
        => PeftAnalyzerTest.VerifyAsync(
            Class("""
                [LoRA, FuseProjections("qkv")] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [LoRA, FuseProjections("qkv")] private Module<Tensor, Tensor> k_proj = Linear(16, 16, dtype: null);
                [LoRA, {|#0:FuseProjections("qkv")|}] private Module<Tensor, Tensor> v_proj = Linear(16, 16, dtype: ScalarType.Float64);
                [LoRA, FuseProjections("gu")] private Module<Tensor, Tensor> gate = Linear(16, 16, dtype: ScalarType.Float64);
                [LoRA, FuseProjections("gu")] private Module<Tensor, Tensor> up = Linear(16, 16, dtype: Wide);
                private static readonly ScalarType? Wide = ScalarType.Float32;
            """, "        return q_proj.call(x) + k_proj.call(x) + v_proj.call(x).to(ScalarType.Float32) + gate.call(y) + up.call(y);"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(0).WithArguments("qkv", "v_proj",
                "it is built with dtype Float64 but 'q_proj' with the default dtype; one product runs in one dtype, so build them with the same dtype or give them different group names"));

    [Fact]
    public Task DeclaredMembersGivenDifferentArguments_ReportPEFT0052AtTheCall()
        => PeftAnalyzerTest.VerifyAsync(
            Class("""
                [LoRA, FuseProjections("qkv")] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [LoRA, FuseProjections("qkv")] private Module<Tensor, Tensor> k_proj = Linear(16, 16);
                [LoRA, FuseProjections("qkv")] private Module<Tensor, Tensor> v_proj = Linear(16, 16);
            """, "        return q_proj.call(x) + {|#0:k_proj.call(y)|} + v_proj.call(x) + k_proj.call(x);"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(0).WithArguments("qkv", "k_proj",
                "forward passes it 'y' but passes 'x' to 'q_proj'; only members called with the same input run as one product, so pass them the same tensor or remove the member from the group"));

    [Fact]
    public Task DeclaredGroupInAClassDerivedFromAPeftClass_ReportsPEFT0052_AndNoPEFT0051()
        => PeftAnalyzerTest.VerifyAsync(
            Class("""
                [LoRA] private Module<Tensor, Tensor> inner = Linear(16, 16);
            """, "        return inner.call(x) + y;", name: "BaseBlock") + "\n" +
            Class("""
                [LoRA, {|#0:FuseProjections("qk")|}] private Module<Tensor, Tensor> q_proj = Linear(16, 16);
                [LoRA, FuseProjections("qk")] private Module<Tensor, Tensor> k_proj = Linear(16, 16);
                [LoRA] private Module<Tensor, Tensor> a = Linear(16, 16);
                [LoRA] private Module<Tensor, Tensor> b = Linear(16, 16);
            """, "        return q_proj.call(x) + k_proj.call(x) + a.call(y) + b.call(y);", name: "DerivedBlock", baseType: "BaseBlock")
                .Replace("base(nameof(DerivedBlock))", "base()"),
            PeftAnalyzerTest.Diagnostic("PEFT0052").WithLocation(0).WithArguments("qk", "q_proj",
                "the class derives from a PEFT class, whose generated ISiblingProjections stays in force; declare the group in the base class"));
}
