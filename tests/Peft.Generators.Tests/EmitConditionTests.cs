namespace Peft.Generators.Tests;

/// <summary>When the generator emits nothing: the MSBuild switch, and declarations PeftModelValidator.CanEmit rejects.</summary>
public class EmitConditionTests
{
    [Theory]
    [InlineData("true")]
    [InlineData("True")]
    [InlineData(" TRUE ")]
    public void DisablePeftSourceGeneratorEmitsNothing(string value)
    {
        var run = TestCompilation.Run(TestCompilation.Create(Sources.Attention), TestOptionsProvider.DisableGenerator(value));

        Assert.Empty(run.Sources);
    }

    [Theory]
    [InlineData("false")]
    [InlineData("")]
    [InlineData("yes")]
    public void OtherSwitchValuesKeepTheGeneratorOn(string value)
    {
        var run = TestCompilation.Run(TestCompilation.Create(Sources.Attention), TestOptionsProvider.DisableGenerator(value));

        Assert.Single(run.Sources);
    }

    [Fact]
    public void NoSwitchKeepsTheGeneratorOn()
    {
        var run = TestCompilation.Run(TestCompilation.Create(Sources.Attention), new TestOptionsProvider());

        Assert.Single(run.Sources);
    }

    public static TheoryData<string, string> InvalidDeclarations() => new()
    {
        { "non-partial class", """
            public sealed class Bad : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> fc = Linear(4, 4);
                public Bad() : base("Bad") { RegisterComponents(); }
                public override Tensor forward(Tensor x) => fc.call(x);
            }
            """ },
        { "non-partial containing type", """
            public static class Holder
            {
                public sealed partial class Bad : Module<Tensor, Tensor>
                {
                    [LoRA] private Module<Tensor, Tensor> fc = Linear(4, 4);
                    public Bad() : base("Bad") { RegisterComponents(); }
                    public override Tensor forward(Tensor x) => fc.call(x);
                }
            }
            """ },
        { "readonly adapted field", """
            public sealed partial class Bad : Module<Tensor, Tensor>
            {
                [LoRA] private readonly Module<Tensor, Tensor> fc = Linear(4, 4);
                public Bad() : base("Bad") { RegisterComponents(); }
                public override Tensor forward(Tensor x) => fc.call(x);
            }
            """ },
        { "get-only adapted property", """
            public sealed partial class Bad : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> Fc { get; } = Linear(4, 4);
                public Bad() : base("Bad") { RegisterComponents(); }
                public override Tensor forward(Tensor x) => Fc.call(x);
            }
            """ },
        { "field typed Linear cannot hold a wrapper", """
            public sealed partial class Bad : Module<Tensor, Tensor>
            {
                [LoRA] private TorchSharp.Modules.Linear fc = Linear(4, 4);
                public Bad() : base("Bad") { RegisterComponents(); }
                public override Tensor forward(Tensor x) => fc.call(x);
            }
            """ },
        { "not a module", """
            public sealed partial class Bad
            {
                [LoRA] private Module<Tensor, Tensor> fc = Linear(4, 4);
                public Tensor Run(Tensor x) => fc.call(x);
            }
            """ },
        { "prompt tuning mixed with LoRA on one member", """
            public sealed partial class Bad : Module<Tensor, Tensor>
            {
                [LoRA][PromptTune] private Module<Tensor, Tensor> fc = Linear(4, 4);
                public Bad() : base("Bad") { RegisterComponents(); }
                public override Tensor forward(Tensor x) => fc.call(x);
            }
            """ },
    };

    [Theory]
    [MemberData(nameof(InvalidDeclarations))]
    public void InvalidDeclarationEmitsNothingAndDoesNotThrow(string description, string declaration)
    {
        var compilation = TestCompilation.Create(Wrap(declaration));
        // The input itself is well-formed C#: only the PEFT rules are broken.
        Assert.DoesNotContain(compilation.GetDiagnostics(), d => d.Severity == Microsoft.CodeAnalysis.DiagnosticSeverity.Error);

        var run = TestCompilation.Run(compilation);

        Assert.True(run.Sources.IsEmpty, description);
    }

    [Fact]
    public void InvalidClassDoesNotStopAValidOne()
    {
        string bad = Wrap("""
            public sealed class Bad : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> fc = Linear(4, 4);
                public Bad() : base("Bad") { RegisterComponents(); }
                public override Tensor forward(Tensor x) => fc.call(x);
            }
            """);

        var run = TestCompilation.Run(TestCompilation.Create(bad, Sources.Attention));

        Assert.Equal("MyModels.Attention.Peft.g.cs", Assert.Single(run.Sources).HintName);
    }

    [Fact]
    public void PartialClassesSplitAcrossFilesEmitOnce()
    {
        string part1 = Wrap("""
            public sealed partial class Split : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> a = Linear(4, 4);
                public Split() : base("Split") => InitializePeft();
                public override Tensor forward(Tensor x) => b.call(a.call(x));
            }
            """);
        string part2 = Wrap("""
            public sealed partial class Split
            {
                [Kronecker(2)] private Module<Tensor, Tensor> b = Linear(4, 4);
                [Trainable] private Module<Tensor, Tensor> c = Linear(4, 4);
            }
            """);

        var run = TestCompilation.Run(TestCompilation.Create(part1, part2));

        string source = Assert.Single(run.Sources).SourceText.ToString();
        Assert.Contains("new global::Peft.PeftAdapterDeclaration(\"a\", \"default\", \"LoRA\")", source);
        Assert.Contains("new global::Peft.PeftAdapterDeclaration(\"b\", \"default\", \"Kronecker\")", source);
        Assert.Contains("trainableMembers: new string[] { \"c\" }", source);
    }

    private static string Wrap(string declaration) => """
        #pragma warning disable CS1591
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace Checks
        {

        """ + declaration + """

        }
        """;
}
