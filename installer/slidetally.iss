; Inno Setup script for Windows (Inno Setup 6.3 or later). Built by .github/workflows/windows.yml; by hand:
;   py -3.11 -m venv .venv-build && .venv-build\Scripts\pip install -e .[installer]
;   .venv-build\Scripts\pyinstaller --noconfirm installer\slidetally.spec --distpath dist --workpath build\pyinstaller
;   iscc /DAppVersion=<version from pyproject.toml> installer\slidetally.iss
; Installs per user by default (no admin rights needed), as lab workstations often require.

#if Ver < EncodeVer(6, 3, 0)
  #error Inno Setup 6.3 or later is needed (x64compatible)
#endif
#ifndef AppVersion
  #error Pass the version from pyproject.toml: iscc /DAppVersion=X.Y.Z installer\slidetally.iss
#endif
#define AppName "SlideTally"

[Setup]
AppId={{6B1E7E0B-3C55-4E1B-9E59-7D3C2B8A41F2}
AppName={#AppName}
AppVersion={#AppVersion}
VersionInfoVersion={#AppVersion}
AppPublisher=SlideTally developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
OutputDir=..\dist
OutputBaseFilename=SlideTally-{#AppVersion}-setup
SetupIconFile=icons\slidetally.ico
Compression=lzma2
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
UninstallDisplayIcon={app}\slidetally.exe
WizardStyle=modern
ChangesEnvironment=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"
Name: "addtopath"; Description: "Add slidetally-cli to the PATH (for scripts)"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
Source: "..\dist\slidetally\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\slidetally.exe"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\slidetally.exe"; Tasks: desktopicon

[Registry]
; The user's PATH for a per-user install, the system PATH for an all-users one; removed again on uninstall.
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; \
    Tasks: addtopath; Check: (not IsAdminInstallMode) and NotOnPath(ExpandConstant('{app}'))
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; \
    ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; \
    Check: IsAdminInstallMode and NotOnPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\slidetally.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
function PathKey(var Root: Integer): String;
begin
  if IsAdminInstallMode then begin
    Root := HKEY_LOCAL_MACHINE;
    Result := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';
  end else begin
    Root := HKEY_CURRENT_USER;
    Result := 'Environment';
  end;
end;

function NotOnPath(Dir: String): Boolean;
var
  Root: Integer;
  Key, Path: String;
begin
  Key := PathKey(Root);
  if not RegQueryStringValue(Root, Key, 'Path', Path) then
    Path := '';
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  Root, At: Integer;
  Key, Path, Dir: String;
begin
  if CurUninstallStep <> usPostUninstall then
    exit;
  Key := PathKey(Root);
  Dir := ExpandConstant('{app}');
  if RegQueryStringValue(Root, Key, 'Path', Path) then begin
    Path := ';' + Path + ';';
    At := Pos(';' + Uppercase(Dir) + ';', Uppercase(Path));
    if At > 0 then begin
      Delete(Path, At, Length(Dir) + 1);
      Path := Copy(Path, 2, Length(Path) - 2);
      RegWriteExpandStringValue(Root, Key, 'Path', Path);
    end;
  end;
end;
